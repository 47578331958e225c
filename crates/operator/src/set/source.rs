//! A set's source and output templates, checked together before anything is listed: the
//! prefix is an `s3://bucket/prefix/` location, the globs parse, every template is injective
//! (`template.rs`), and no output can land inside the source where the set would select it
//! again (a set that processes its own outputs never ends).

use super::glob::{GlobError, KeyFilter};
use super::template::{KeyParts, OutputTemplate, TemplateError};

/// Why a set's source or templates are refused, in words for its status condition.
#[derive(Debug, PartialEq, Eq)]
pub enum SetSourceError {
    Prefix(String),
    Glob(GlobError),
    Template(TemplateError),
    /// An output of `key` would be an object the set selects.
    OutputReenters {
        template: String,
        key: String,
        output: String,
    },
}

impl std::fmt::Display for SetSourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SetSourceError::Prefix(message) => f.write_str(message),
            SetSourceError::Glob(error) => write!(f, "{error}"),
            SetSourceError::Template(error) => write!(f, "{error}"),
            SetSourceError::OutputReenters {
                template,
                key,
                output,
            } => write!(
                f,
                "output template `{template}` puts the output of {key:?} at {output:?}, inside the \
                 source prefix where the set would select it again; write outputs under another \
                 prefix, or exclude them"
            ),
        }
    }
}

/// A set's source and templates, checked.
#[derive(Debug)]
pub struct SetSource {
    pub bucket: String,
    /// The key prefix listed (may be empty: the whole bucket).
    pub prefix: String,
    pub filter: KeyFilter,
    /// Each output URL template (`s3://bucket/...{stem}...`).
    pub outputs: Vec<OutputTemplate>,
    set_name: String,
}

/// Keys an output template is tried on for the static re-entry check: a flat name, a nested
/// one, and one without an extension.
const SAMPLE_KEYS: [&str; 3] = ["sample.wav", "dir/sample.mp3", "dir/sub/sample"];

impl SetSource {
    /// Checks `prefix` (an `s3://bucket/prefix` URL), the globs and the output templates.
    pub fn new(
        set_name: &str,
        prefix: &str,
        include: &[String],
        exclude: &[String],
        outputs: &[String],
    ) -> Result<SetSource, SetSourceError> {
        let (bucket, key_prefix) = split_s3_url(prefix).ok_or_else(|| {
            SetSourceError::Prefix(format!(
                "source prefix {prefix:?} must be s3://BUCKET/ or s3://BUCKET/PREFIX/"
            ))
        })?;
        let filter = KeyFilter::new(include, exclude).map_err(SetSourceError::Glob)?;
        let single_extension = filter.single_extension();
        let mut templates = Vec::with_capacity(outputs.len());
        for output in outputs {
            let template = OutputTemplate::parse(output).map_err(SetSourceError::Template)?;
            // The bucket is literal: outputs of one set go to one place per template.
            let literal = template.literal_prefix();
            if split_s3_url(literal).is_none() || !literal["s3://".len()..].contains('/') {
                return Err(SetSourceError::Prefix(format!(
                    "output template {output:?} must start with s3://BUCKET/"
                )));
            }
            template
                .injectivity(single_extension.as_deref())
                .map_err(SetSourceError::Template)?;
            templates.push(template);
        }
        let source = SetSource {
            bucket: bucket.to_string(),
            prefix: key_prefix.to_string(),
            filter,
            outputs: templates,
            set_name: set_name.to_string(),
        };
        for key in SAMPLE_KEYS {
            source.output_reenters(key)?;
        }
        Ok(source)
    }

    /// The output URLs of the object `key` (relative to the prefix), one per template.
    pub fn outputs_of(&self, key: &str) -> Vec<String> {
        let parts = KeyParts::split(key);
        self.outputs
            .iter()
            .map(|template| template.render(&parts, &self.set_name))
            .collect()
    }

    /// The input URL of the object `key` (relative to the prefix).
    pub fn input_of(&self, key: &str) -> String {
        format!("s3://{}/{}{key}", self.bucket, self.prefix)
    }

    /// `Err` when an output of `key` is an object this set would select: checked for sample
    /// keys up front, and for every listed key before its child is made.
    pub fn output_reenters(&self, key: &str) -> Result<(), SetSourceError> {
        for (template, output) in self.outputs.iter().zip(self.outputs_of(key)) {
            if self.selects_url(&output) {
                return Err(SetSourceError::OutputReenters {
                    template: template.source().to_string(),
                    key: key.to_string(),
                    output,
                });
            }
        }
        Ok(())
    }
}

impl SetSource {
    /// Whether the object at `url` (`s3://bucket/key`) is one this set would select.
    pub fn selects_url(&self, url: &str) -> bool {
        split_s3_url(url).is_some_and(|(bucket, key)| {
            bucket == self.bucket
                && key
                    .strip_prefix(&self.prefix)
                    .is_some_and(|relative| self.filter.selects(relative))
        })
    }
}

/// `s3://bucket/key` as (bucket, key); the key may be empty.
fn split_s3_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("s3://")?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    crate::crd::valid_bucket_name(bucket).then_some((bucket, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn season(outputs: &[&str]) -> Result<SetSource, SetSourceError> {
        SetSource::new(
            "season-3",
            "s3://studio-raw/season-3/",
            &strings(&["*.wav", "*.mp3"]),
            &strings(&["*/drafts/*"]),
            &strings(outputs),
        )
    }

    #[test]
    fn the_issue_example_is_accepted_and_renders_per_object() {
        let source = season(&["s3://studio-out/season-3/{dir}{stem}-enhanced.{ext}"]).unwrap();
        assert_eq!(
            source.input_of("ep1/a.wav"),
            "s3://studio-raw/season-3/ep1/a.wav"
        );
        assert_eq!(
            source.outputs_of("ep1/a.wav"),
            ["s3://studio-out/season-3/ep1/a-enhanced.wav"]
        );
        assert!(source.filter.selects("ep1/a.wav"));
        assert!(!source.filter.selects("ep1/drafts/b.wav"));
    }

    #[test]
    fn an_output_inside_the_source_that_the_set_would_select_is_refused() {
        let error = season(&["s3://studio-raw/season-3/{dir}{stem}-enhanced.{ext}"]).unwrap_err();
        assert!(matches!(error, SetSourceError::OutputReenters { .. }));
        assert!(
            error.to_string().contains("inside the source prefix"),
            "{error}"
        );
        // Inside the prefix but excluded by the globs: the set never selects it.
        let source = SetSource::new(
            "s",
            "s3://studio-raw/season-3/",
            &strings(&["raw/*.wav"]),
            &[],
            &strings(&["s3://studio-raw/season-3/out/{key}"]),
        );
        assert!(source.is_ok(), "{source:?}");
    }

    #[test]
    fn a_template_that_maps_two_objects_to_one_output_is_refused() {
        let error = season(&["s3://studio-out/{stem}.mp3"]).unwrap_err();
        assert!(matches!(error, SetSourceError::Template(_)), "{error:?}");
        assert!(error.to_string().contains("{key}"), "{error}");
    }

    #[test]
    fn a_bad_prefix_or_output_location_is_refused_with_its_words() {
        let bad_prefix = SetSource::new("s", "https://x/y/", &[], &[], &strings(&["s3://o/{key}"]));
        assert!(bad_prefix.unwrap_err().to_string().contains("s3://BUCKET/"));
        let bad_output = season(&["https://out.example/{key}"]).unwrap_err();
        assert!(
            bad_output
                .to_string()
                .contains("must start with s3://BUCKET/"),
            "{bad_output}"
        );
        let bad_glob = SetSource::new("s", "s3://raw/", &strings(&["[a"]), &[], &[]);
        assert!(matches!(bad_glob, Err(SetSourceError::Glob(_))));
    }
}
