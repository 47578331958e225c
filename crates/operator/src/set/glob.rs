//! Include/exclude patterns of a MediaJobSet, matched against object keys relative to the set's
//! prefix with the semantics of `aws s3 cp --include/--exclude` (Python's fnmatch), so users
//! can reuse the patterns they know: `*` matches any run of characters, `/` included; `?` one
//! character; `[abc]`, `[a-z]` and `[!abc]` one character in (or not in) a class.
//!
//! Two departures from fnmatch, both so a pattern means what it looks like: a backslash
//! escapes the next character (fnmatch has no escapes), and an unclosed `[` is an error rather
//! than a literal bracket.

use std::fmt;

/// Longer patterns are refused: no real key filter needs them, and matching costs
/// key length × pattern length.
const MAX_PATTERN_CHARS: usize = 256;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Char(char),
    AnyChar,
    Star,
    /// Inclusive ranges (`a` is `a-a`); `negated` for `[!…]`.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Token {
    fn matches(&self, c: char) -> bool {
        match self {
            Token::Char(expected) => *expected == c,
            Token::AnyChar => true,
            Token::Star => false,
            Token::Class { negated, ranges } => {
                ranges.iter().any(|&(lo, hi)| (lo..=hi).contains(&c)) != *negated
            }
        }
    }
}

/// One parsed pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Glob {
    tokens: Vec<Token>,
}

/// Why a pattern was refused; every message names the pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GlobError {
    Empty,
    UnclosedClass {
        pattern: String,
    },
    TrailingBackslash {
        pattern: String,
    },
    TooLong {
        pattern: String,
        chars: usize,
    },
    /// `[z-a]`: fnmatch silently matches nothing with it; surely a mistake.
    ReversedRange {
        pattern: String,
        lo: char,
        hi: char,
    },
}

impl fmt::Display for GlobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GlobError::Empty => write!(
                f,
                "an include or exclude pattern is empty; use `*` to match every key"
            ),
            GlobError::UnclosedClass { pattern } => write!(
                f,
                "pattern `{pattern}` has a `[` with no closing `]` (write `\\[` for a literal \
                 bracket)"
            ),
            GlobError::TrailingBackslash { pattern } => write!(
                f,
                "pattern `{pattern}` ends with a lone `\\`, which escapes nothing (write `\\\\` \
                 for a literal backslash)"
            ),
            GlobError::TooLong { pattern, chars } => {
                let start: String = pattern.chars().take(40).collect();
                write!(
                    f,
                    "pattern `{start}…` is {chars} characters long; at most \
                     {MAX_PATTERN_CHARS} are allowed"
                )
            }
            GlobError::ReversedRange { pattern, lo, hi } => write!(
                f,
                "pattern `{pattern}` has the range `{lo}-{hi}`, which is empty because `{lo}` \
                 comes after `{hi}`"
            ),
        }
    }
}

impl std::error::Error for GlobError {}

impl Glob {
    /// Parses `pattern`, refusing what fnmatch would read in a way the user likely did not mean.
    pub fn parse(pattern: &str) -> Result<Glob, GlobError> {
        let chars: Vec<char> = pattern.chars().collect();
        if chars.is_empty() {
            return Err(GlobError::Empty);
        }
        if chars.len() > MAX_PATTERN_CHARS {
            return Err(GlobError::TooLong {
                pattern: pattern.to_string(),
                chars: chars.len(),
            });
        }
        let mut tokens = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let token = match chars[i] {
                // `**` matches what `*` does; one star keeps the matcher's backtracking simple.
                '*' if tokens.last() == Some(&Token::Star) => {
                    i += 1;
                    continue;
                }
                '*' => Token::Star,
                '?' => Token::AnyChar,
                '[' => {
                    let (class, next) = parse_class(pattern, &chars, i + 1)?;
                    i = next;
                    tokens.push(class);
                    continue;
                }
                _ => {
                    let (c, next) = literal_char(pattern, &chars, i)?;
                    i = next;
                    tokens.push(Token::Char(c));
                    continue;
                }
            };
            tokens.push(token);
            i += 1;
        }
        Ok(Glob { tokens })
    }

    /// Whether the whole of `key` matches. Backtracks only to the latest `*`, so it takes at
    /// most key length × pattern length steps, however many stars the pattern has.
    pub fn matches(&self, key: &str) -> bool {
        let tokens = &self.tokens;
        // Next token, and byte offset into `key`.
        let (mut t, mut k) = (0, 0);
        // After a mismatch: the token after the latest star, and where in `key` that star's
        // match ends now.
        let mut star: Option<(usize, usize)> = None;
        loop {
            let next = key[k..].chars().next();
            match (tokens.get(t), next) {
                (None, None) => return true,
                (Some(Token::Star), _) => {
                    t += 1;
                    star = Some((t, k));
                    continue;
                }
                (Some(token), Some(c)) if token.matches(c) => {
                    t += 1;
                    k += c.len_utf8();
                    continue;
                }
                _ => {}
            }
            // Mismatch: let the latest star take one more character, or fail without one.
            let Some((after_star, star_end)) = star else {
                return false;
            };
            let Some(c) = key[star_end..].chars().next() else {
                return false;
            };
            t = after_star;
            k = star_end + c.len_utf8();
            star = Some((t, k));
        }
    }

    /// The extension every matching key ends with: the literal text after the pattern's last
    /// literal `.`, when it holds no metacharacter and no `/`.
    fn literal_extension(&self) -> Option<String> {
        let dot = self.tokens.iter().rposition(|t| *t == Token::Char('.'))?;
        let tail = &self.tokens[dot + 1..];
        let ext: Option<String> = tail
            .iter()
            .map(|t| match t {
                Token::Char(c) if *c != '/' => Some(*c),
                _ => None,
            })
            .collect();
        ext.filter(|ext| !ext.is_empty())
    }
}

/// The character at `chars[i]`, or the one it escapes; and the index after it.
fn literal_char(pattern: &str, chars: &[char], i: usize) -> Result<(char, usize), GlobError> {
    match chars[i] {
        '\\' => match chars.get(i + 1) {
            Some(&c) => Ok((c, i + 2)),
            None => Err(GlobError::TrailingBackslash {
                pattern: pattern.to_string(),
            }),
        },
        c => Ok((c, i + 1)),
    }
}

/// Reads the class that starts at `chars[start]`, just after its `[`; returns it and the index
/// after its `]`. As in fnmatch, a `]` first in the class is literal, and so is a `-` first or
/// last.
fn parse_class(pattern: &str, chars: &[char], start: usize) -> Result<(Token, usize), GlobError> {
    let unclosed = || GlobError::UnclosedClass {
        pattern: pattern.to_string(),
    };
    let negated = chars.get(start) == Some(&'!');
    let mut i = if negated { start + 1 } else { start };
    let members_start = i;
    let mut ranges = Vec::new();
    loop {
        match chars.get(i) {
            None => return Err(unclosed()),
            Some(']') if i > members_start => {
                return Ok((Token::Class { negated, ranges }, i + 1));
            }
            Some(_) => {}
        }
        let (lo, next) = literal_char(pattern, chars, i)?;
        i = next;
        let range_end = chars.get(i + 1).filter(|&&c| c != ']');
        if chars.get(i) == Some(&'-') && range_end.is_some() {
            let (hi, next) = literal_char(pattern, chars, i + 1)?;
            if lo > hi {
                return Err(GlobError::ReversedRange {
                    pattern: pattern.to_string(),
                    lo,
                    hi,
                });
            }
            ranges.push((lo, hi));
            i = next;
        } else {
            ranges.push((lo, lo));
        }
    }
}

/// A set's include and exclude patterns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyFilter {
    include: Vec<Glob>,
    exclude: Vec<Glob>,
    /// `single_extension`, worked out once.
    extension: Option<String>,
}

impl KeyFilter {
    /// Parses every pattern; the error names the first bad one.
    pub fn new(include: &[String], exclude: &[String]) -> Result<KeyFilter, GlobError> {
        let parse_all = |patterns: &[String]| -> Result<Vec<Glob>, GlobError> {
            patterns
                .iter()
                .map(String::as_str)
                .map(Glob::parse)
                .collect()
        };
        let include = parse_all(include)?;
        let exclude = parse_all(exclude)?;
        let mut extensions = include.iter().map(Glob::literal_extension);
        let extension = match extensions.next() {
            Some(Some(first)) if extensions.all(|ext| ext.as_ref() == Some(&first)) => Some(first),
            _ => None,
        };
        Ok(KeyFilter {
            include,
            exclude,
            extension,
        })
    }

    /// Whether the set processes the object with this key (relative to the set's prefix):
    /// some include pattern matches (or there is none) and no exclude pattern does.
    ///
    /// Never selected, whatever the patterns: a key with an empty name (a folder marker `a/`,
    /// or the empty key of an object named exactly as the prefix), as it names no file; and,
    /// when `single_extension` is `Some(e)`, a key whose name is just `.e` (`ep1/.wav`): it
    /// has no stem, so its extension as the output template reads it is empty, and
    /// `{dir}{stem}.mp3` would map both `.wav` and `.wav.wav` to `.wav.mp3`.
    pub fn selects(&self, relative_key: &str) -> bool {
        let name = relative_key
            .rsplit_once('/')
            .map_or(relative_key, |(_, name)| name);
        if name.is_empty() {
            return false;
        }
        if let Some(ext) = &self.extension
            && name.strip_prefix('.') == Some(ext.as_str())
        {
            return false;
        }
        let included =
            self.include.is_empty() || self.include.iter().any(|g| g.matches(relative_key));
        included && !self.exclude.iter().any(|g| g.matches(relative_key))
    }

    /// The extension `e` when every include pattern ends in the same literal `.e` (`*.wav`,
    /// `ep*/*.wav`): then every selected key's name is `stem.e` with a non-empty stem, which
    /// lets an output template drop `{ext}` (`{dir}{stem}.mp3`) and stay one-to-one.
    pub fn single_extension(&self) -> Option<String> {
        self.extension.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn glob(pattern: &str) -> Glob {
        Glob::parse(pattern).unwrap()
    }

    fn filter(include: &[&str], exclude: &[&str]) -> KeyFilter {
        let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        KeyFilter::new(&owned(include), &owned(exclude)).unwrap()
    }

    #[test]
    fn the_issue_example() {
        let f = filter(&["*.wav", "*.mp3"], &["*/drafts/*"]);
        let keys = ["ep1/a.wav", "ep1/drafts/b.wav", "c.mp3", "d.txt"];
        let selected: Vec<_> = keys.into_iter().filter(|k| f.selects(k)).collect();
        assert_eq!(selected, ["ep1/a.wav", "c.mp3"]);
        assert_eq!(f.single_extension(), None);
    }

    #[test]
    fn star_and_question_mark_cross_slashes() {
        assert!(glob("*.wav").matches("a/b/c.wav"));
        assert!(glob("ep1/*").matches("ep1/x/y.wav"));
        assert!(glob("a?b").matches("a/b"));
        assert!(glob("*").matches(""));
        assert!(glob("**").matches("a/b"));
        assert!(glob("a*").matches("a"));
        assert!(glob("*a*b*").matches("xaybz"));
        assert!(!glob("*a*b*").matches("xbyaz"));
        assert!(glob("ep?/*.wav").matches("ep1/take.wav"));
        assert!(!glob("ep?/*.wav").matches("ep10/take.wav"));
        assert!(!glob("*.wav").matches("a.wav.bak"));
        assert!(!glob("a").matches("ab"));
        assert!(!glob("ab").matches("a"));
        assert!(!glob("?").matches(""));
    }

    #[test]
    fn classes() {
        let g = glob("take[0-9][abc].wav");
        assert!(g.matches("take1a.wav"));
        assert!(g.matches("take9c.wav"));
        assert!(!g.matches("take1d.wav"));
        assert!(!g.matches("takexa.wav"));
        let not = glob("[!a-c]*");
        assert!(not.matches("d.wav"));
        assert!(not.matches("/x"));
        assert!(!not.matches("b.wav"));
        assert!(!not.matches(""));
        // `]` first and `-` first or last are members.
        assert!(glob("[]x]").matches("]"));
        assert!(glob("[!]x]").matches("y"));
        assert!(!glob("[!]x]").matches("]"));
        assert!(glob("[-a]").matches("-"));
        assert!(glob("[a-]").matches("-"));
        assert!(!glob("[a-]").matches("b"));
        // `^` is no negation in fnmatch; `[/]` matches a slash.
        assert!(glob("[^a]").matches("^"));
        assert!(glob("a[/]b").matches("a/b"));
        assert!(glob("[a-cx-z]").matches("y"));
        assert!(!glob("[a-cx-z]").matches("m"));
    }

    #[test]
    fn escapes() {
        assert!(glob(r"a\*b").matches("a*b"));
        assert!(!glob(r"a\*b").matches("axb"));
        assert!(glob(r"\?").matches("?"));
        assert!(!glob(r"\?").matches("x"));
        assert!(glob(r"\[x]").matches("[x]"));
        assert!(glob(r"a\\b").matches(r"a\b"));
        assert!(glob(r"\a").matches("a"));
        assert!(glob(r"[\]]").matches("]"));
        assert!(glob(r"[a\-z]").matches("-"));
        assert!(!glob(r"[a\-z]").matches("m"));
        assert!(glob(r"[\!a]").matches("!"));
    }

    /// The linear matcher agrees with plain recursive backtracking on every pattern of up to
    /// five pieces and every key of up to five characters over a small alphabet.
    #[test]
    fn matcher_agrees_with_backtracking() {
        fn reference(tokens: &[Token], key: &[char]) -> bool {
            match tokens.split_first() {
                None => key.is_empty(),
                Some((Token::Star, rest)) => (0..=key.len()).any(|i| reference(rest, &key[i..])),
                Some((token, rest)) => {
                    key.first().is_some_and(|&c| token.matches(c)) && reference(rest, &key[1..])
                }
            }
        }
        fn strings(alphabet: &[&str], max: usize) -> Vec<String> {
            let mut all = vec![String::new()];
            let mut last = vec![String::new()];
            for _ in 0..max {
                last = last
                    .iter()
                    .flat_map(|s| alphabet.iter().map(move |a| format!("{s}{a}")))
                    .collect();
                all.extend(last.iter().cloned());
            }
            all
        }
        let keys: Vec<Vec<char>> = strings(&["a", "b", "/"], 5)
            .iter()
            .map(|k| k.chars().collect())
            .collect();
        for pattern in strings(&["a", "b", "*", "?", "[!a]", "/"], 5) {
            let Ok(g) = Glob::parse(&pattern) else {
                continue;
            };
            for key in &keys {
                let text: String = key.iter().collect();
                assert_eq!(
                    g.matches(&text),
                    reference(&g.tokens, key),
                    "`{pattern}` on `{text}`"
                );
            }
        }
    }

    #[test]
    fn unicode_keys() {
        assert!(glob("?.wav").matches("é.wav"));
        assert!(glob("??").matches("日本"));
        assert!(!glob("?").matches("日本"));
        assert!(glob("*/*本.wav").matches("エピソード/日本.wav"));
        assert!(glob("[α-ω]x").matches("λx"));
        assert!(glob("*🎵*").matches("a🎵b"));
        assert!(glob("a?c").matches("a🎵c"));
        assert!(glob("日*").matches("日本/a"));
    }

    #[test]
    fn pathological_patterns_stay_fast() {
        let key = "a".repeat(100_000);
        let start = Instant::now();
        assert!(!glob("*a*a*a*a*a*b").matches(&key));
        assert!(!glob("*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b").matches(&key));
        assert!(glob("*a*a*a*a*a*a").matches(&key));
        let long = format!("{}b", "*a".repeat(120));
        assert!(!glob(&long).matches(&key[..10_000]));
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn parse_errors_name_the_pattern() {
        assert_eq!(Glob::parse(""), Err(GlobError::Empty));
        assert!(matches!(
            Glob::parse("[ab"),
            Err(GlobError::UnclosedClass { .. })
        ));
        assert!(matches!(
            Glob::parse("a[]"),
            Err(GlobError::UnclosedClass { .. })
        ));
        assert!(matches!(
            Glob::parse("a[!]"),
            Err(GlobError::UnclosedClass { .. })
        ));
        assert!(matches!(
            Glob::parse("a\\"),
            Err(GlobError::TrailingBackslash { .. })
        ));
        assert!(matches!(
            Glob::parse("[a\\"),
            Err(GlobError::TrailingBackslash { .. })
        ));
        assert!(matches!(
            Glob::parse("[z-a]"),
            Err(GlobError::ReversedRange {
                lo: 'z',
                hi: 'a',
                ..
            })
        ));
        assert!(Glob::parse(&"a".repeat(MAX_PATTERN_CHARS)).is_ok());
        assert!(Glob::parse(&"é".repeat(MAX_PATTERN_CHARS)).is_ok());
        let long = "a".repeat(MAX_PATTERN_CHARS + 1);
        assert!(matches!(
            Glob::parse(&long),
            Err(GlobError::TooLong { chars: 257, .. })
        ));
        let message = |p: &str| Glob::parse(p).unwrap_err().to_string();
        assert!(message("ep[1-3/*.wav").contains("`ep[1-3/*.wav`"));
        assert!(message("ep[1-3/*.wav").contains("no closing `]`"));
        assert!(message("x\\").contains("`x\\`"));
        assert!(message("[9-0]").contains("`9-0`"));
        assert!(message(&long).contains("257 characters"));
        assert!(message("").contains("empty"));
        // KeyFilter::new reports the first bad pattern, include or exclude.
        let err = KeyFilter::new(&["*.wav".into()], &["drafts/[".into()]).unwrap_err();
        assert!(err.to_string().contains("`drafts/[`"));
    }

    #[test]
    fn filter_rules() {
        let all = filter(&[], &[]);
        assert!(all.selects("a"));
        assert!(all.selects("x/y.z"));
        assert!(!all.selects("folder/"));
        assert!(!all.selects(""));
        assert_eq!(all.single_extension(), None);
        let only_excludes = filter(&[], &["*.txt", "tmp/*"]);
        assert!(only_excludes.selects("a.wav"));
        assert!(!only_excludes.selects("a.txt"));
        assert!(!only_excludes.selects("tmp/a.wav"));
        // Folder markers never, even when a pattern matches them.
        assert!(!filter(&["*/"], &[]).selects("ep1/"));
        assert!(!filter(&["*"], &[]).selects("a/b/"));
        // Exclude wins over include.
        assert!(!filter(&["*.wav"], &["*.wav"]).selects("a.wav"));
    }

    #[test]
    fn single_extension() {
        let ext = |include: &[&str]| filter(include, &[]).single_extension();
        assert_eq!(ext(&["*.wav"]), Some("wav".into()));
        assert_eq!(
            ext(&["ep*/*.wav", "*.wav", "x/[ab]?.wav"]),
            Some("wav".into())
        );
        assert_eq!(ext(&["*.tar.gz"]), Some("gz".into()));
        assert_eq!(ext(&[r"*\.wav"]), Some("wav".into()));
        assert_eq!(ext(&[r"*.w\av"]), Some("wav".into()));
        assert_eq!(ext(&["*.wav", "*.mp3"]), None);
        assert_eq!(ext(&["*.wav", "*.WAV"]), None);
        assert_eq!(ext(&["*.wav", "*"]), None);
        assert_eq!(ext(&["*.wa?"]), None);
        assert_eq!(ext(&["*.wa*"]), None);
        assert_eq!(ext(&["*.[w]av"]), None);
        assert_eq!(ext(&["*[.]wav"]), None);
        assert_eq!(ext(&["*.wav/*"]), None);
        assert_eq!(ext(&["a.b/c"]), None);
        assert_eq!(ext(&["*."]), None);
        assert_eq!(ext(&["wav"]), None);
        assert_eq!(ext(&[]), None);
    }

    /// The promise `single_extension` makes to the output template: every selected key's
    /// extension, split as the template splits it, is that extension.
    #[test]
    fn selected_keys_have_the_single_extension() {
        // The template's split, restated: the extension follows the name's last `.`, unless
        // that `.` is first or last in the name.
        let ext_of = |key: &str| {
            let name = key.rsplit_once('/').map_or(key, |(_, name)| name);
            match name.rfind('.') {
                Some(dot) if dot > 0 && dot + 1 < name.len() => name[dot + 1..].to_string(),
                _ => String::new(),
            }
        };
        let f = filter(&["*.wav", "ep*/*.wav"], &[]);
        assert_eq!(f.single_extension(), Some("wav".into()));
        let keys = [
            "a.wav",
            ".wav",
            "d/.wav",
            ".wav.wav",
            "d/.wav.wav",
            "..wav",
            "a..wav",
            "a.b.wav",
            "x.wav/a.wav",
            "x.wav/",
            "x.wav/.wav",
            "ep1/.wav",
            "a.wav.mp3",
            ".x.wav",
            "wav",
        ];
        for key in keys {
            if f.selects(key) {
                assert_eq!(ext_of(key), "wav", "{key}");
            }
        }
        assert!(!f.selects(".wav"));
        assert!(!f.selects("d/.wav"));
        assert!(f.selects(".wav.wav"));
        assert!(f.selects("..wav"));
        // Without a single extension a name `.wav` is an ordinary key.
        assert!(filter(&["*.wav", "*.mp3"], &[]).selects("d/.wav"));
    }
}
