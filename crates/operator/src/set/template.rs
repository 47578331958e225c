//! Output URL templates of a MediaJobSet: where the output for one source object goes, written
//! over the parts of the object's key relative to the set's prefix (`{dir}{stem}.mp3`).
//!
//! Two objects must never share an output (one job would overwrite the other's), so a template
//! is checked statically: `OutputTemplate::injectivity` accepts it only when the key can be
//! read back from every output.

use std::fmt;

/// The parts of an object key relative to the set's prefix.
///
/// `dir` is empty or ends with `/`; `name`, `stem` and `ext` hold no `/`, and `ext` holds no
/// `.`. The extension is never empty when there is one: a name ending in `.` (`a.`) and a
/// name whose only `.` is its first character (`.hidden`) have no extension, and their stem is
/// the whole name. So the name is always `stem` when `ext` is empty and `stem.ext` otherwise,
/// which the injectivity check relies on (were `a.` split as `a` and ``, it would render like
/// `a` in `{stem}.{ext}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyParts<'a> {
    pub key: &'a str,
    pub dir: &'a str,
    pub name: &'a str,
    pub stem: &'a str,
    pub ext: &'a str,
}

impl KeyParts<'_> {
    /// Splits `key` (relative to the set's prefix) into its parts.
    pub fn split(key: &str) -> KeyParts<'_> {
        let name_start = key.rfind('/').map_or(0, |slash| slash + 1);
        let (dir, name) = key.split_at(name_start);
        let (stem, ext) = match name.rfind('.') {
            Some(dot) if dot > 0 && dot + 1 < name.len() => (&name[..dot], &name[dot + 1..]),
            _ => (name, ""),
        };
        KeyParts {
            key,
            dir,
            name,
            stem,
            ext,
        }
    }
}

/// A placeholder of a template.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Key,
    Dir,
    Name,
    Stem,
    Ext,
    /// The set's name: the same for every object of a set.
    Set,
}

impl Field {
    const ALL: [(&'static str, Field); 6] = [
        ("key", Field::Key),
        ("dir", Field::Dir),
        ("name", Field::Name),
        ("stem", Field::Stem),
        ("ext", Field::Ext),
        ("set", Field::Set),
    ];

    fn named(name: &str) -> Option<Field> {
        Field::ALL
            .iter()
            .find(|(known, _)| *known == name)
            .map(|&(_, field)| field)
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Field(Field),
}

/// A parsed output template: literal text and placeholders.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputTemplate {
    source: String,
    pieces: Vec<Piece>,
}

/// Why a template was refused; every message names the template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplateError {
    UnknownPlaceholder { template: String, name: String },
    UnclosedBrace { template: String },
    StrayBrace { template: String },
    NoObjectPlaceholder { template: String },
    NotInjective { template: String },
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TemplateError::UnknownPlaceholder { template, name } => write!(
                f,
                "output template `{template}` has an unknown placeholder {{{name}}}; the known \
                 ones are {{key}}, {{dir}}, {{name}}, {{stem}}, {{ext}} and {{set}} (write {{{{ \
                 and }}}} for literal braces)"
            ),
            TemplateError::UnclosedBrace { template } => write!(
                f,
                "output template `{template}` has a `{{` with no closing `}}` (write {{{{ for a \
                 literal brace)"
            ),
            TemplateError::StrayBrace { template } => write!(
                f,
                "output template `{template}` has a `}}` with no opening `{{` (write }}}} for a \
                 literal brace)"
            ),
            TemplateError::NoObjectPlaceholder { template } => write!(
                f,
                "output template `{template}` names no part of the object key, so every object \
                 would write the same output: use {{key}}, or {{dir}} with {{name}}, or \
                 {{dir}}{{stem}}.{{ext}}"
            ),
            TemplateError::NotInjective { template } => write!(
                f,
                "output template `{template}` can map two objects to one output: include \
                 {{key}}, or {{dir}} with {{name}}, or {{dir}}{{stem}}.{{ext}}, or \
                 {{dir}}{{stem}} when every include pattern ends in the same extension (like \
                 `*.wav`); put {{dir}} before the other parts, and separate parts that could run \
                 into each other (`{{ext}}{{key}}` cannot be read back, `{{ext}}/{{key}}` can)"
            ),
        }
    }
}

impl std::error::Error for TemplateError {}

impl OutputTemplate {
    /// Parses `template`; `{{` and `}}` stand for literal braces.
    pub fn parse(template: &str) -> Result<OutputTemplate, TemplateError> {
        let owned = || template.to_string();
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut chars = template.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.next_if_eq(&'{').is_some() => literal.push('{'),
                '}' if chars.next_if_eq(&'}').is_some() => literal.push('}'),
                '}' => return Err(TemplateError::StrayBrace { template: owned() }),
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some('{') | None => {
                                return Err(TemplateError::UnclosedBrace { template: owned() });
                            }
                            Some(c) => name.push(c),
                        }
                    }
                    let field =
                        Field::named(&name).ok_or_else(|| TemplateError::UnknownPlaceholder {
                            template: owned(),
                            name,
                        })?;
                    if !literal.is_empty() {
                        pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                    }
                    pieces.push(Piece::Field(field));
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        let per_object = pieces
            .iter()
            .any(|piece| matches!(piece, Piece::Field(field) if *field != Field::Set));
        if !per_object {
            return Err(TemplateError::NoObjectPlaceholder { template: owned() });
        }
        Ok(OutputTemplate {
            source: template.to_string(),
            pieces,
        })
    }

    /// The output for one object. Values go in verbatim: keys are already S3 key text.
    pub fn render(&self, parts: &KeyParts<'_>, set_name: &str) -> String {
        let mut out = String::new();
        for piece in &self.pieces {
            out.push_str(match piece {
                Piece::Literal(text) => text,
                Piece::Field(Field::Key) => parts.key,
                Piece::Field(Field::Dir) => parts.dir,
                Piece::Field(Field::Name) => parts.name,
                Piece::Field(Field::Stem) => parts.stem,
                Piece::Field(Field::Ext) => parts.ext,
                Piece::Field(Field::Set) => set_name,
            });
        }
        out
    }

    /// The template as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The literal text before the first placeholder (`{set}` included), so the caller can
    /// tell whether outputs could land inside the source prefix.
    pub fn literal_prefix(&self) -> &str {
        match self.pieces.first() {
            Some(Piece::Literal(text)) => text,
            _ => "",
        }
    }

    /// Checks that two different keys can never render to the same output.
    ///
    /// `single_extension`: `Some(e)` promises that every key this template renders has
    /// `KeyParts::split(key).ext == e` (`KeyFilter::single_extension` gives that promise: its
    /// keys end in `.e` and are not named just `.e`).
    ///
    /// The check is sound, not complete: it accepts a template only when it can read the key
    /// back from any output, by the steps below. Each step is a function of the output, the
    /// template and the set's name (fixed within a set), so when reading back succeeds the
    /// output determines the key. The reader narrows a window of the output, starting with
    /// all of it, and repeats while it makes progress:
    ///
    /// 1. A piece at either end of the window whose text is known (a literal, `{set}`, or a
    ///    part already read back) has a known length: drop it from the window.
    /// 2. When one placeholder is left, its value is the whole window.
    /// 3. The first placeholder `P` is followed by known text `C` holding a character `P`
    ///    never holds (`/` for {name} and {stem}; `/` or `.` for {ext}): `P` ends at that
    ///    character's first occurrence in the window, less its offset in `C`. Symmetrically
    ///    for the last placeholder and the last occurrence in the known text before it.
    /// 4. `{dir}` is first in the window and every piece after it never holds `/` ({name},
    ///    {stem}, {ext}, literals without `/`): `{dir}` ends at the window's last `/` (it is
    ///    empty if there is none), because `{dir}` is empty or ends with `/`. `{set}` counts
    ///    as possibly holding `/`: the check does not see the set's name.
    ///
    /// What is read back gives more: {key} gives every part; {dir} and {name} give {key};
    /// {name} gives {stem} and {ext}; {stem} and {ext} give {name}, because the name is `stem`
    /// when `ext` is empty and `stem.ext` otherwise (see `KeyParts`); with `single_extension`,
    /// {ext} is known from the start. The template is accepted when {key} is read back.
    ///
    /// This is tighter than "the template contains …" where that is unsound:
    /// (a) {key}, when nothing next to it runs into it: `{ext}/{key}` is accepted;
    ///     `{ext}{key}{dir}` is not (`a/a.` and `/a.a` both give `a/a.a/`), nor
    ///     `{ext}{key}{stem}` (`aa.a` and `a.aa` both give `aaa.aaa`).
    /// (b) {dir} and {name}, {dir} first: `{name}{dir}` maps `xy/a` and `y/ax` to `axy/`.
    /// (c) {dir}, {stem} and {ext}, {dir} first (`{stem}{dir}.{ext}` maps `xy/a.b` and
    ///     `y/ax.b` to `axy/.b`), {ext} delimited, e.g. after a literal holding `.` and
    ///     followed only by literals (`{dir}{stem}-{ext}` maps `a.x-y` and `a-x.y` to `a-x-y`),
    ///     and a name ending in `.` has no extension (else `a` and `a.` give `a.`).
    /// (d) {dir} then {stem} with `single_extension`, whose promise excludes the key named
    ///     just `.e` (else `.wav` and `.wav.wav` would both give `.wav.mp3`).
    pub fn injectivity(&self, single_extension: Option<&str>) -> Result<(), TemplateError> {
        if self.reads_back_key(single_extension) {
            Ok(())
        } else {
            Err(TemplateError::NotInjective {
                template: self.source.clone(),
            })
        }
    }

    fn reads_back_key(&self, single_extension: Option<&str>) -> bool {
        let mut known = Known::default();
        let ext_text = single_extension.map(Slot::text);
        if ext_text.is_some() {
            known.learn(Field::Ext);
        }
        let slot = |known: Known, piece: &Piece| match (piece, ext_text) {
            (Piece::Literal(text), _) => Slot::text(text),
            (Piece::Field(Field::Set), _) => Slot::Text {
                has_slash: false,
                has_dot: false,
                may_have_slash: true,
            },
            (Piece::Field(Field::Ext), Some(text)) => text,
            (Piece::Field(field), _) if known.has(*field) => Slot::Text {
                has_slash: false,
                has_dot: false,
                may_have_slash: matches!(field, Field::Key | Field::Dir),
            },
            (Piece::Field(field), _) => Slot::Unknown(*field),
        };
        let mut window = &self.pieces[..];
        while !known.has(Field::Key) {
            let slots: Vec<Slot> = window.iter().map(|piece| slot(known, piece)).collect();
            // Step 1.
            let first = match slots.first() {
                None => break,
                Some(Slot::Text { .. }) => {
                    window = &window[1..];
                    continue;
                }
                Some(&Slot::Unknown(field)) => field,
            };
            let last = match slots.last() {
                None => break,
                Some(Slot::Text { .. }) => {
                    window = &window[..window.len() - 1];
                    continue;
                }
                Some(&Slot::Unknown(field)) => field,
            };
            let learned = if slots.len() == 1 {
                // Step 2.
                Some(first)
            } else if stops(first, text_run(slots[1..].iter())) {
                // Step 3, from the start.
                Some(first)
            } else if stops(last, text_run(slots[..slots.len() - 1].iter().rev())) {
                // Step 3, from the end.
                Some(last)
            } else if first == Field::Dir && slots[1..].iter().all(Slot::never_holds_slash) {
                // Step 4.
                Some(Field::Dir)
            } else {
                None
            };
            match learned {
                Some(field) => known.learn(field),
                None => break,
            }
        }
        known.has(Field::Key)
    }
}

/// What the injectivity check knows of one piece of the window.
#[derive(Clone, Copy, Debug)]
enum Slot {
    /// Text the reader knows in full. `has_*`: the check knows it holds that character;
    /// `may_have_slash`: the check cannot rule out a `/`.
    Text {
        has_slash: bool,
        has_dot: bool,
        may_have_slash: bool,
    },
    /// A part of the key not read back yet.
    Unknown(Field),
}

impl Slot {
    fn text(text: &str) -> Slot {
        let has_slash = text.contains('/');
        Slot::Text {
            has_slash,
            has_dot: text.contains('.'),
            may_have_slash: has_slash,
        }
    }

    fn never_holds_slash(&self) -> bool {
        match *self {
            Slot::Text { may_have_slash, .. } => !may_have_slash,
            Slot::Unknown(field) => matches!(field, Field::Name | Field::Stem | Field::Ext),
        }
    }
}

/// Whether the known text right next to a placeholder (the run of `Text` slots the iterator
/// starts with) holds a `/` and a `.`.
fn text_run<'a>(slots: impl Iterator<Item = &'a Slot>) -> (bool, bool) {
    let mut run = (false, false);
    for slot in slots {
        match *slot {
            Slot::Text {
                has_slash, has_dot, ..
            } => run = (run.0 || has_slash, run.1 || has_dot),
            Slot::Unknown(_) => break,
        }
    }
    run
}

/// Whether a character in the neighbouring text `run` (has `/`, has `.`) marks where `field`'s
/// value stops: a character the value can never hold.
fn stops(field: Field, (has_slash, has_dot): (bool, bool)) -> bool {
    match field {
        Field::Name | Field::Stem => has_slash,
        Field::Ext => has_slash || has_dot,
        Field::Key | Field::Dir | Field::Set => false,
    }
}

/// The parts read back so far, closed under what they give.
#[derive(Clone, Copy, Default)]
struct Known(u8);

impl Known {
    fn has(self, field: Field) -> bool {
        self.0 & field.bit() != 0
    }

    fn learn(&mut self, field: Field) {
        self.0 |= field.bit();
        loop {
            let before = self.0;
            if self.has(Field::Key) {
                for part in [Field::Dir, Field::Name, Field::Stem, Field::Ext] {
                    self.0 |= part.bit();
                }
            }
            if self.has(Field::Dir) && self.has(Field::Name) {
                self.0 |= Field::Key.bit();
            }
            if self.has(Field::Name) {
                self.0 |= Field::Stem.bit() | Field::Ext.bit();
            }
            if self.has(Field::Stem) && self.has(Field::Ext) {
                self.0 |= Field::Name.bit();
            }
            if self.0 == before {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parts(key: &str) -> (&str, &str, &str, &str) {
        let p = KeyParts::split(key);
        assert_eq!(p.key, key);
        (p.dir, p.name, p.stem, p.ext)
    }

    fn render(template: &str, key: &str) -> String {
        OutputTemplate::parse(template)
            .unwrap()
            .render(&KeyParts::split(key), "myset")
    }

    fn accepts(template: &str, single_extension: Option<&str>) -> bool {
        OutputTemplate::parse(template)
            .unwrap()
            .injectivity(single_extension)
            .is_ok()
    }

    #[test]
    fn split_parts() {
        assert_eq!(parts("a"), ("", "a", "a", ""));
        assert_eq!(parts("a.b"), ("", "a.b", "a", "b"));
        assert_eq!(parts("a.b.c"), ("", "a.b.c", "a.b", "c"));
        assert_eq!(parts("ep1/take.wav"), ("ep1/", "take.wav", "take", "wav"));
        assert_eq!(parts("x.y/z"), ("x.y/", "z", "z", ""));
        assert_eq!(parts("d/e/a.b"), ("d/e/", "a.b", "a", "b"));
        assert_eq!(parts(".hidden"), ("", ".hidden", ".hidden", ""));
        assert_eq!(parts("d/.h.b"), ("d/", ".h.b", ".h", "b"));
        assert_eq!(parts("..b"), ("", "..b", ".", "b"));
        assert_eq!(parts("a."), ("", "a.", "a.", ""));
        assert_eq!(parts("a/b/"), ("a/b/", "", "", ""));
        assert_eq!(parts(""), ("", "", "", ""));
        assert_eq!(parts("/a"), ("/", "a", "a", ""));
        assert_eq!(parts("d/é.flac"), ("d/", "é.flac", "é", "flac"));
    }

    #[test]
    fn renders_placeholders_and_braces() {
        assert_eq!(
            render("out/{dir}{stem}-enhanced.{ext}", "ep1/a.wav"),
            "out/ep1/a-enhanced.wav"
        );
        assert_eq!(render("{key}.json", "ep1/a.wav"), "ep1/a.wav.json");
        assert_eq!(
            render("x/{set}/{dir}{name}", "a b+c.wav"),
            "x/myset/a b+c.wav"
        );
        assert_eq!(render("{{{name}}}", "d/a.b"), "{a.b}");
        assert_eq!(render("}}{{{key}", "k"), "}{k");
    }

    #[test]
    fn literal_prefix_stops_at_any_placeholder() {
        let prefix = |t: &str| {
            OutputTemplate::parse(t)
                .unwrap()
                .literal_prefix()
                .to_string()
        };
        assert_eq!(prefix("out/{dir}{name}"), "out/");
        assert_eq!(prefix("{{x}}/{key}"), "{x}/");
        assert_eq!(prefix("x/{set}/{key}"), "x/");
        assert_eq!(prefix("{set}/{key}"), "");
        assert_eq!(prefix("{key}.json"), "");
    }

    #[test]
    fn parse_errors() {
        let err = |t: &str| OutputTemplate::parse(t).unwrap_err();
        assert_eq!(
            err("out/{dir}{base}"),
            TemplateError::UnknownPlaceholder {
                template: "out/{dir}{base}".into(),
                name: "base".into()
            }
        );
        let message = err("out/{dir}{base}").to_string();
        assert!(message.contains("{base}"), "{message}");
        assert!(message.contains("out/{dir}{base}"), "{message}");
        assert!(message.contains("{key}, {dir}, {name}, {stem}, {ext} and {set}"));
        assert!(
            matches!(err("{}"), TemplateError::UnknownPlaceholder { name, .. } if name.is_empty())
        );
        assert!(matches!(
            err("{Key}"),
            TemplateError::UnknownPlaceholder { .. }
        ));
        assert!(matches!(
            err("out/{key"),
            TemplateError::UnclosedBrace { .. }
        ));
        assert!(matches!(
            err("out/{di{key}"),
            TemplateError::UnclosedBrace { .. }
        ));
        assert!(matches!(
            err("out/}{key}"),
            TemplateError::StrayBrace { .. }
        ));
        assert!(matches!(err("{key}}"), TemplateError::StrayBrace { .. }));
        assert!(matches!(
            err("out/{set}.json"),
            TemplateError::NoObjectPlaceholder { .. }
        ));
        assert!(matches!(err(""), TemplateError::NoObjectPlaceholder { .. }));
        assert!(matches!(
            err("{{key}}"),
            TemplateError::NoObjectPlaceholder { .. }
        ));
        assert!(err("a{").to_string().contains("`a{`"));
    }

    #[test]
    fn accepts_the_common_templates() {
        assert!(accepts("out/{dir}{stem}-enhanced.{ext}", None));
        assert!(accepts("{dir}{stem}.mp3", Some("wav")));
        assert!(accepts("{key}.json", None));
        assert!(accepts("x/{set}/{dir}{name}", None));
        assert!(accepts("{dir}{name}", None));
        assert!(accepts("{key}", None));
        assert!(accepts("out/{dir}{stem}.{ext}", None));
        assert!(accepts("by-ext/{ext}/{key}", None));
        assert!(accepts("{set}/{dir}{stem}/{name}", None));
        assert!(accepts("{dir}x/{name}", None));
    }

    #[test]
    fn refuses_templates_that_collide() {
        // Each refused template with two keys it maps to one output.
        let cases = [
            ("{dir}{stem}.mp3", None, "a.wav", "a.flac"),
            ("{dir}{stem}-{ext}", None, "a.x-y", "a-x.y"),
            ("{name}{dir}", None, "xy/a", "y/ax"),
            ("{stem}{dir}.{ext}", None, "xy/a.b", "y/ax.b"),
            ("{stem}{dir}.mp3", Some("wav"), "xy/a.wav", "y/ax.wav"),
            ("{ext}{key}{dir}", None, "a/a.", "/a.a"),
            ("{ext}{key}{stem}", None, "aa.a", "a.aa"),
            ("{name}", None, "a/x", "b/x"),
            ("out/{dir}{stem}", None, "a.b", "a.c"),
        ];
        for (template, ext, a, b) in cases {
            let parsed = OutputTemplate::parse(template).unwrap();
            let error = parsed.injectivity(ext).unwrap_err();
            let message = error.to_string();
            assert!(message.contains(template), "{message}");
            assert!(message.contains("{dir}{stem}.{ext}"), "{message}");
            assert_ne!(a, b);
            assert_eq!(
                parsed.render(&KeyParts::split(a), "s"),
                parsed.render(&KeyParts::split(b), "s"),
                "{template}: {a} and {b}"
            );
        }
    }

    /// Keys that exercise every split: no extension, dotfiles, trailing dots, `/` at either
    /// end, empty names, literals of the templates inside keys.
    const CORPUS: &[&str] = &[
        "", "a", "b", "ab", "a.b", "a.bb", "aa.b", "a.b.c", "a.b.b", ".h", ".h.b", ".b", ".b.b",
        ".", "..b", "a.", "a..b", "a.-x", "-x.b", "a-x.b", "a.b-x", "a-x", "a/b", "b/a", "/ab",
        "/a", "//a.b", "a/", "a/b/", "ab/", "d/a", "d/a.b", "d/e/a.b", "d/.b", "d/.b.b", "x.y/z",
        "x.y/z.b", "out/a.b", "xy/a", "y/ax", "a/a.", "/a.a", "aa.a", "a.aa", "d/a-x.b", "d/a.x-b",
        "s/b", "a/s/b",
    ];

    /// Every template of up to five pieces that the check accepts renders the corpus to
    /// distinct outputs: for every key when no single extension is promised, and for the keys
    /// with extension `b` when it is. Set names include `/` and `.`, which the check may not
    /// assume away.
    #[test]
    fn accepted_templates_never_collide_on_the_corpus() {
        const PIECES: &[&str] = &[
            "{key}", "{dir}", "{name}", "{stem}", "{ext}", "{set}", ".", "-x", "/", "out/",
        ];
        let is_literal = |piece: &str| !piece.starts_with('{');
        let corpus: Vec<KeyParts<'_>> = CORPUS.iter().map(|k| KeyParts::split(k)).collect();
        let with_b: Vec<KeyParts<'_>> = corpus.iter().copied().filter(|p| p.ext == "b").collect();
        assert!(with_b.len() > 10);
        let mut templates = vec![String::new()];
        let mut accepted = HashMap::new();
        let mut outputs = HashMap::new();
        for _ in 0..5 {
            let mut longer = Vec::new();
            for template in &templates {
                for piece in PIECES {
                    // Two literals in a row are one literal, already enumerated.
                    if is_literal(piece)
                        && PIECES
                            .iter()
                            .any(|p| is_literal(p) && template.ends_with(p))
                    {
                        continue;
                    }
                    longer.push(format!("{template}{piece}"));
                }
            }
            for template in &longer {
                let Ok(parsed) = OutputTemplate::parse(template) else {
                    continue;
                };
                for (single, keys) in [(None, &corpus), (Some("b"), &with_b)] {
                    if parsed.injectivity(single).is_err() {
                        continue;
                    }
                    *accepted.entry(single.is_some()).or_insert(0) += 1;
                    for set in ["s", "a.b", "x/"] {
                        outputs.clear();
                        for parts in keys {
                            let out = parsed.render(parts, set);
                            if let Some(other) = outputs.insert(out.clone(), parts.key) {
                                panic!(
                                    "`{template}` (single extension {single:?}, set {set}) \
                                     renders `{other}` and `{}` to `{out}`",
                                    parts.key
                                );
                            }
                        }
                    }
                }
            }
            templates = longer;
        }
        // The enumeration reached many accepted templates of both kinds.
        assert!(accepted[&false] > 1000, "{accepted:?}");
        assert!(accepted[&true] > accepted[&false], "{accepted:?}");
    }

    /// Templates of up to three pieces against every key of up to four characters from
    /// `a`, `.`, `/`, `-`: exhaustive over short keys where the corpus is hand-picked.
    #[test]
    fn accepted_short_templates_never_collide_on_all_short_keys() {
        const PIECES: &[&str] = &["{key}", "{dir}", "{name}", "{stem}", "{ext}", ".", "/", "a"];
        let mut keys = vec![String::new()];
        let mut frontier = vec![String::new()];
        for _ in 0..4 {
            frontier = frontier
                .iter()
                .flat_map(|k| ['a', '.', '/', '-'].map(|c| format!("{k}{c}")))
                .collect();
            keys.extend(frontier.iter().cloned());
        }
        let mut templates = vec![String::new()];
        for _ in 0..3 {
            templates = templates
                .iter()
                .flat_map(|t| PIECES.iter().map(move |p| format!("{t}{p}")))
                .collect();
            for template in &templates {
                let Ok(parsed) = OutputTemplate::parse(template) else {
                    continue;
                };
                for single in [None, Some("a")] {
                    if parsed.injectivity(single).is_err() {
                        continue;
                    }
                    let mut seen = HashMap::new();
                    for key in &keys {
                        let parts = KeyParts::split(key);
                        if single.is_some_and(|e| e != parts.ext) {
                            continue;
                        }
                        let out = parsed.render(&parts, "s");
                        if let Some(other) = seen.insert(out.clone(), key) {
                            panic!(
                                "`{template}` ({single:?}) renders `{other}`, `{key}` to `{out}`"
                            );
                        }
                    }
                }
            }
        }
    }
}
