//! Request validation per endpoint. Each check returns the `detail` of a 400
//! `/problems/validation-error`, naming the field at fault.

use serde_json::Value;

use super::io::{Location, parse_location};
use crate::operation::Operation;

/// Where a job reads and writes, in request order.
#[derive(Debug)]
pub struct JobIo {
    pub inputs: Vec<Location>,
    pub outputs: Vec<Location>,
}

const CONTENT_TYPES: [&str; 11] = [
    "conference",
    "interview",
    "lecture",
    "meeting",
    "mobile_phone",
    "music",
    "podcast",
    "studio",
    "voice_over",
    "voice_recording",
    "other",
];
const AMOUNTS: [&str; 4] = ["low", "medium", "high", "max"];
const TRANSCODE_KINDS: [&str; 9] = [
    "mp4", "wav", "mp3", "webm", "jpg", "hls", "dash", "ogg", "aac",
];
const MASTER_KINDS: [&str; 5] = ["wav", "ogg", "mp3", "mp4", "aac"];

/// Parses a request body: empty means `{}` (some SDKs send no body), anything else must be a
/// JSON object.
pub fn parse_body(body: &[u8]) -> Result<Value, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Default::default()));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err("Request body must be a JSON object".into()),
        Err(_) => Err("Request body contains invalid json".into()),
    }
}

/// Validates a job-start body and extracts where the job will read and write.
pub fn validate_job(op: Operation, body: &Value) -> Result<JobIo, String> {
    if let Some(on_complete) = body.get("on_complete") {
        validate_on_complete(on_complete)?;
    }
    if let Some(content) = body.get("content") {
        check_enum(content.get("type"), "content.type", &CONTENT_TYPES)?;
    }
    match op {
        Operation::Enhance => {
            let io = single(body, true)?;
            validate_enhance_audio(body.get("audio"))?;
            Ok(io)
        }
        Operation::Analyze | Operation::AnalyzeSpeech | Operation::AnalyzeMusic => {
            let io = single(body, true)?;
            if let Some(p) = body.pointer("/loudness/profile") {
                p.as_str().ok_or("loudness.profile must be a string")?;
            }
            Ok(io)
        }
        Operation::Diagnose => single(body, false),
        Operation::Transcode => {
            let io = plural(body, None)?;
            for (i, out) in array(body, "outputs")?.iter().enumerate() {
                let field = format!("outputs[{i}].kind");
                match out.get("kind") {
                    None => return Err(format!("{field} is required")),
                    kind => check_enum(kind, &field, &TRANSCODE_KINDS)?,
                }
            }
            Ok(io)
        }
        Operation::Master | Operation::MasterPreview => {
            let io = plural(body, Some(5))?;
            if io.inputs.len() != 1 {
                return Err("inputs must hold exactly one input".into());
            }
            for (i, out) in array(body, "outputs")?.iter().enumerate() {
                check_enum(
                    out.get("kind"),
                    &format!("outputs[{i}].kind"),
                    &MASTER_KINDS,
                )?;
                if let Some(preset) = out.pointer("/master/dynamic_eq/preset") {
                    let ok = preset
                        .as_str()
                        .is_some_and(|p| p.len() == 1 && ("a"..="n").contains(&p));
                    if !ok {
                        return Err(format!(
                            "outputs[{i}].master.dynamic_eq.preset must be one of a … n"
                        ));
                    }
                }
            }
            if op == Operation::MasterPreview {
                let duration = body
                    .pointer("/inputs/0/segment/duration")
                    .and_then(Value::as_f64);
                if duration.is_some_and(|d| d > 30.0) {
                    return Err("inputs[0].segment.duration must be at most 30 seconds".into());
                }
            }
            Ok(io)
        }
    }
}

fn single(body: &Value, with_output: bool) -> Result<JobIo, String> {
    let input = parse_location(body.get("input").unwrap_or(&Value::Null), "input")?;
    let outputs = if with_output {
        vec![parse_location(
            body.get("output").unwrap_or(&Value::Null),
            "output",
        )?]
    } else {
        Vec::new()
    };
    Ok(JobIo {
        inputs: vec![input],
        outputs,
    })
}

fn array<'a>(body: &'a Value, field: &str) -> Result<&'a Vec<Value>, String> {
    match body.get(field) {
        None | Some(Value::Null) => Err(format!("{field} is required")),
        Some(Value::Array(a)) if a.is_empty() => Err(format!("{field} must not be empty")),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(format!("{field} must be an array")),
    }
}

fn plural(body: &Value, max_outputs: Option<usize>) -> Result<JobIo, String> {
    let mut inputs = Vec::new();
    for (i, input) in array(body, "inputs")?.iter().enumerate() {
        let field = format!("inputs[{i}].source");
        inputs.push(parse_location(
            input.get("source").unwrap_or(&Value::Null),
            &field,
        )?);
    }
    let outputs_json = array(body, "outputs")?;
    if let Some(max) = max_outputs.filter(|m| outputs_json.len() > *m) {
        return Err(format!("outputs may hold at most {max} outputs"));
    }
    let mut outputs = Vec::new();
    for (i, output) in outputs_json.iter().enumerate() {
        let field = format!("outputs[{i}].destination");
        let destination = output.get("destination").unwrap_or(&Value::Null);
        if destination.get("ref").is_some() {
            return Err(format!(
                "{field}: storage references are not supported by this emulator"
            ));
        }
        outputs.push(parse_location(destination, &field)?);
    }
    Ok(JobIo { inputs, outputs })
}

fn check_enum(value: Option<&Value>, field: &str, allowed: &[&str]) -> Result<(), String> {
    match value {
        None => Ok(()),
        Some(Value::String(s)) if allowed.contains(&s.as_str()) => Ok(()),
        Some(_) => Err(format!("{field} must be one of: {}", allowed.join(", "))),
    }
}

fn validate_enhance_audio(audio: Option<&Value>) -> Result<(), String> {
    let Some(audio) = audio else { return Ok(()) };
    if !audio.is_object() {
        return Err("audio must be an object".into());
    }
    for pointer in [
        "/dynamics/range_control/amount",
        "/noise/reduction/amount",
        "/speech/sibilance/reduction/amount",
        "/speech/plosive/reduction/amount",
        "/speech/click/reduction/amount",
    ] {
        let field = format!("audio{}", pointer.replace('/', "."));
        check_enum(audio.pointer(pointer), &field, &AMOUNTS)?;
    }
    if let Some(v) = audio.pointer("/speech/isolation/amount")
        && !v.as_f64().is_some_and(|a| (0.0..=100.0).contains(&a))
    {
        return Err("audio.speech.isolation.amount must be a number from 0 to 100".into());
    }
    Ok(())
}

fn validate_on_complete(value: &Value) -> Result<(), String> {
    let url = value
        .get("url")
        .and_then(Value::as_str)
        .ok_or("on_complete.url is required and must be a string")?;
    match url::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => {}
        _ => return Err("on_complete.url must be an http(s) URL".into()),
    }
    match value.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Array(names)) if names.iter().all(Value::is_string) => {}
        Some(Value::Object(map)) if map.values().all(Value::is_string) => {}
        Some(_) => {
            return Err("on_complete.headers must be a list of names or a map of strings".into());
        }
    }
    match value.get("body") {
        None | Some(Value::Null) | Some(Value::String(_)) => Ok(()),
        Some(_) => Err("on_complete.body must be a string".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const URL: &str = "https://b.example.com/k.wav";

    #[test]
    fn empty_and_braces_bodies_are_the_same() {
        assert_eq!(parse_body(b"").unwrap(), json!({}));
        assert_eq!(parse_body(b" {} ").unwrap(), json!({}));
        assert_eq!(
            parse_body(b"{nope").unwrap_err(),
            "Request body contains invalid json"
        );
        assert!(parse_body(b"[1]").is_err());
    }

    #[test]
    fn each_endpoint_names_its_missing_field() {
        let err = |op, body| validate_job(op, &body).unwrap_err();
        assert_eq!(err(Operation::Enhance, json!({})), "input is required");
        assert_eq!(
            err(Operation::Enhance, json!({"input": URL})),
            "output is required"
        );
        assert_eq!(
            err(Operation::AnalyzeMusic, json!({"input": URL})),
            "output is required"
        );
        assert!(validate_job(Operation::Diagnose, &json!({"input": URL})).is_ok());
        assert_eq!(
            err(Operation::Transcode, json!({"input": URL})),
            "inputs is required"
        );
        let body = json!({"inputs": [{"source": URL}], "outputs": []});
        assert_eq!(err(Operation::Transcode, body), "outputs must not be empty");
        let body = json!({"inputs": [{"source": URL}], "outputs": [{"destination": URL}]});
        assert_eq!(
            err(Operation::Transcode, body),
            "outputs[0].kind is required"
        );
    }

    #[test]
    fn enums_and_ranges_are_checked() {
        let base = |extra: Value| {
            let mut b = json!({"input": URL, "output": URL});
            b.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            validate_job(Operation::Enhance, &b)
        };
        assert!(base(json!({"content": {"type": "podcast"}})).is_ok());
        assert!(
            base(json!({"content": {"type": "opera"}}))
                .unwrap_err()
                .contains("content.type")
        );
        let noise = json!({"audio": {"noise": {"reduction": {"amount": "huge"}}}});
        assert!(
            base(noise)
                .unwrap_err()
                .contains("audio.noise.reduction.amount")
        );
        let iso = json!({"audio": {"speech": {"isolation": {"amount": 140}}}});
        assert!(base(iso).unwrap_err().contains("isolation.amount"));
        let cb = json!({"on_complete": {"url": "ftp://x"}});
        assert!(base(cb).unwrap_err().contains("on_complete.url"));
        let cb = json!({"on_complete": {"url": "http://x/cb", "headers": ["x-job-id"]}});
        assert!(base(cb).is_ok());
    }

    #[test]
    fn mastering_limits() {
        let outs = |n: usize| {
            (0..n)
                .map(|_| json!({"destination": URL}))
                .collect::<Vec<_>>()
        };
        let body = json!({"inputs": [{"source": URL}], "outputs": outs(6)});
        assert!(
            validate_job(Operation::Master, &body)
                .unwrap_err()
                .contains("at most 5")
        );
        let body = json!({"inputs": [{"source": URL}], "outputs": outs(5)});
        assert_eq!(
            validate_job(Operation::Master, &body)
                .unwrap()
                .outputs
                .len(),
            5
        );
        let body = json!({"inputs": [{"source": URL, "segment": {"start": 0, "duration": 45}}],
                          "outputs": outs(1)});
        assert!(
            validate_job(Operation::MasterPreview, &body)
                .unwrap_err()
                .contains("30 seconds")
        );
        let body = json!({"inputs": [{"source": URL}],
                          "outputs": [{"destination": URL, "master": {"dynamic_eq": {"preset": "z"}}}]});
        assert!(
            validate_job(Operation::Master, &body)
                .unwrap_err()
                .contains("preset")
        );
    }
}
