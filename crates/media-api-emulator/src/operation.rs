//! The job endpoints the emulator serves, as listed in `shared/docs/media-api.md` §4. This list
//! is the emulator's own reading of the contract; the operator keeps a separate one, so a
//! misreading on either side shows up as a failing test instead of agreeing with itself.

/// One job endpoint below `/media/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    Enhance,
    Analyze,
    AnalyzeSpeech,
    AnalyzeMusic,
    Diagnose,
    Transcode,
    Master,
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

    /// The path below `/media/`.
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
            .ok_or_else(|| format!("unknown job path /media/{s}"))
    }
}
