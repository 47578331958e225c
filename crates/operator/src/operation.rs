//! The Media API job kinds a MediaJob can run. The user-facing name is the job's API path below
//! `/media/` (`analyze/speech`, `master/preview`), so the manifest reads like the API reference.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Operation {
    #[serde(rename = "enhance")]
    Enhance,
    #[serde(rename = "analyze")]
    Analyze,
    #[serde(rename = "analyze/speech")]
    AnalyzeSpeech,
    #[serde(rename = "analyze/music")]
    AnalyzeMusic,
    #[serde(rename = "diagnose")]
    Diagnose,
    #[serde(rename = "transcode")]
    Transcode,
    #[serde(rename = "master")]
    Master,
    #[serde(rename = "master/preview")]
    MasterPreview,
}

impl Operation {
    pub const ALL: [Operation; 8] = [
        Operation::Enhance,
        Operation::Analyze,
        Operation::AnalyzeSpeech,
        Operation::AnalyzeMusic,
        Operation::Diagnose,
        Operation::Transcode,
        Operation::Master,
        Operation::MasterPreview,
    ];

    /// The name users write in `spec.operation`.
    pub fn name(self) -> &'static str {
        match self {
            Operation::Enhance => "enhance",
            Operation::Analyze => "analyze",
            Operation::AnalyzeSpeech => "analyze/speech",
            Operation::AnalyzeMusic => "analyze/music",
            Operation::Diagnose => "diagnose",
            Operation::Transcode => "transcode",
            Operation::Master => "master",
            Operation::MasterPreview => "master/preview",
        }
    }

    /// Transcode and mastering take `inputs`/`outputs` arrays; the others a single `input`/`output`.
    pub fn takes_several_outputs(self) -> bool {
        matches!(
            self,
            Operation::Transcode | Operation::Master | Operation::MasterPreview
        )
    }

    /// Diagnose returns its result inline and has no output location.
    pub fn has_output(self) -> bool {
        !matches!(self, Operation::Diagnose)
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Operation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Operation::ALL
            .into_iter()
            .find(|op| op.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown operation {s:?}; expected one of: {}",
                    Operation::ALL.map(Operation::name).join(", ")
                )
            })
    }
}
