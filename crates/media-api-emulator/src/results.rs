//! What a finished job produces: the bytes for each output and the inline `result`.
//! The emulator does not process media: outputs are the input bytes, and reports carry
//! plausible values derived from the input so the same input always gives the same report.

use axum::body::Bytes;
use serde_json::{Value, json};

use super::jobs::estimated_media_duration;
use crate::operation::Operation;

/// Output bodies (one per output location, in order) and the status `result`.
#[derive(Debug, PartialEq)]
pub struct Produced {
    pub outputs: Vec<Bytes>,
    pub result: Value,
}

pub fn produce(op: Operation, request: &Value, inputs: &[Bytes], output_count: usize) -> Produced {
    let media: Bytes = if inputs.len() == 1 {
        inputs[0].clone()
    } else {
        inputs
            .iter()
            .flat_map(|b| b.iter().copied())
            .collect::<Vec<u8>>()
            .into()
    };
    let copies = |result| Produced {
        outputs: vec![media.clone(); output_count],
        result,
    };
    match op {
        Operation::Enhance | Operation::Transcode => copies(json!({})),
        Operation::Master => {
            let target = request
                .pointer("/outputs/0/master/loudness/target_level")
                .and_then(Value::as_f64)
                .unwrap_or(-14.0);
            copies(json!({"initial_level": measured_loudness(&media), "final_level": target}))
        }
        Operation::MasterPreview => copies(json!({
            "media_info": media_info(&media),
            "audio": {
                "loudness": {"measured": measured_loudness(&media), "range": 4.2, "true_peak": -1.0},
                "eq": {"levels": (0..16).map(|i| -20.0 + f64::from(i) * 0.5).collect::<Vec<_>>()}
            }
        })),
        Operation::Analyze | Operation::AnalyzeSpeech | Operation::AnalyzeMusic => {
            let report = analysis_report(op, &media);
            let bytes = serde_json::to_vec_pretty(&report).unwrap_or_default();
            Produced {
                outputs: vec![bytes.into(); output_count],
                result: json!({}),
            }
        }
        Operation::Diagnose => Produced {
            outputs: Vec::new(),
            result: diagnosis(&media),
        },
    }
}

/// A small stable hash of the content (FNV-1a), the seed of every invented number.
fn seed(media: &[u8]) -> u64 {
    media.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

fn measured_loudness(media: &[u8]) -> f64 {
    -30.0 + (seed(media) % 2000) as f64 / 100.0
}

fn container_kind(media: &[u8]) -> &'static str {
    match media {
        [b'R', b'I', b'F', b'F', ..] => "wav",
        [b'I', b'D', b'3', ..] | [0xFF, 0xFB, ..] => "mp3",
        [b'O', b'g', b'g', b'S', ..] => "ogg",
        [_, _, _, _, b'f', b't', b'y', b'p', ..] => "mp4",
        _ => "unknown",
    }
}

fn media_info(media: &[u8]) -> Value {
    let duration = estimated_media_duration(media.len() as u64);
    json!({
        "container": {"kind": container_kind(media), "duration": duration, "bitrate": 128_000,
                      "size": media.len()},
        "audio": {"codec": "pcm", "channels": 2, "sample_rate": 48_000, "duration": duration,
                  "bitrate": 128_000}
    })
}

fn analysis_report(op: Operation, media: &[u8]) -> Value {
    let duration = estimated_media_duration(media.len() as u64);
    let loudness = measured_loudness(media);
    let mut audio = json!({
        "clipping": {"num_sections": 0},
        "loudness": {"measured": loudness, "range": 5.1, "gating_mode": "speech",
                     "sample_peak": -1.2, "true_peak": -1.1},
        "bandwidth": 20_000,
        "noise": {"snr_average": 32.5, "level_average": -70.2},
        "silence": {"percentage": 0, "num_sections": 0},
    });
    match op {
        Operation::AnalyzeMusic => {
            audio["music"] = json!({"percentage": 100, "num_sections": 1, "sections": [{
                "start": 0, "duration": duration, "loudness": loudness, "bpm": 120,
                "key": [["C major", 0.8]], "genre": [["pop", 0.6]], "instrument": [["piano", 0.5]]
            }]});
        }
        _ => audio["speech"] = json!({"percentage": 100, "num_sections": 1}),
    }
    json!({
        "media_info": media_info(media),
        "processed_region": {"start": 0, "end": duration, "audio": audio},
        "emulated": true
    })
}

fn diagnosis(media: &[u8]) -> Value {
    let s = seed(media);
    let quality = 2.0 + (s % 300) as f64 / 100.0;
    let distribution: Vec<Value> = (0..10)
        .map(|i| {
            let hit = i == quality as i32;
            json!({"lower_bound": i, "upper_bound": i + 1,
                   "duration": if hit { estimated_media_duration(media.len() as u64) } else { 0.0 },
                   "percentage": if hit { 100 } else { 0 }})
        })
        .collect();
    json!({
        "media_info": media_info(media),
        "audio": {
            "quality_score": {"average": quality, "distribution": distribution},
            "noise_score": {"average": (s % 100) as f64 / 100.0, "distribution": []},
            "clipping": {"events": 0},
            "loudness": {"measured": measured_loudness(media), "range": 2.3, "gating_mode": "speech",
                         "sample_peak": -0.8, "true_peak": -0.8},
            "music": {"percentage": 0},
            "silence": {"percentage": 0, "at_beginning": 0, "at_end": 0, "num_sections": 0,
                        "silent_channels": []},
            "speech": {"percentage": 100, "events": {"plosive": 0, "sibilance": 0}}
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> Vec<Bytes> {
        vec![Bytes::from_static(b"RIFF....WAVEfmt some audio")]
    }

    #[test]
    fn copies_media_to_every_output() {
        let p = produce(Operation::Transcode, &json!({}), &input(), 2);
        assert_eq!(p.outputs, vec![input()[0].clone(), input()[0].clone()]);
        assert_eq!(p.result, json!({}));
        let p = produce(Operation::Enhance, &json!({}), &input(), 1);
        assert_eq!((p.outputs.len(), p.result), (1, json!({})));
    }

    #[test]
    fn analyze_writes_a_json_report_and_diagnose_answers_inline() {
        let p = produce(Operation::Analyze, &json!({}), &input(), 1);
        let report: Value = serde_json::from_slice(&p.outputs[0]).unwrap();
        assert_eq!(report["media_info"]["container"]["kind"], "wav");
        assert!(report["processed_region"]["audio"]["loudness"]["measured"].is_f64());
        assert_eq!(p.result, json!({}));

        let p = produce(Operation::Diagnose, &json!({}), &input(), 0);
        assert!(p.outputs.is_empty());
        assert_eq!(
            p.result["audio"]["quality_score"]["distribution"]
                .as_array()
                .unwrap()
                .len(),
            10
        );
        // Deterministic: the same input gives the same diagnosis.
        assert_eq!(p, produce(Operation::Diagnose, &json!({}), &input(), 0));
    }

    #[test]
    fn master_reports_levels() {
        let req = json!({"outputs": [{"master": {"loudness": {"target_level": -16}}}]});
        let p = produce(Operation::Master, &req, &input(), 1);
        assert_eq!(p.result["final_level"], json!(-16.0));
    }
}
