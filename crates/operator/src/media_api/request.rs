//! The typed job request and the pure function that turns it into the body of `POST /media/<op>`.
//! Bodies carry credentials (pre-signed URLs, auth blocks): they are built here, sent, and never
//! printed; the typed request's `Debug` shows only redacted values.

use serde_json::{Map, Value, json};

use super::error::{ErrorClass, MediaApiError};
use crate::operation::Operation;
use crate::secret::SecretString;

/// Where the API reads or writes media (§4.0, §6).
#[derive(Clone, Debug, PartialEq)]
pub enum Location {
    /// A pre-signed or public `https://` URL, or `s3://bucket/key`.
    Url(SecretString),
    /// A plain URL plus AWS credentials the service uses to reach it.
    WithAuth { url: String, auth: AwsAuth },
}

/// AWS credentials in an auth block: `{key, secret, token?}`.
#[derive(Clone, Debug, PartialEq)]
pub struct AwsAuth {
    pub key: String,
    pub secret: SecretString,
    /// STS session token.
    pub token: Option<SecretString>,
}

/// An output and its per-output fields (transcode's `id/kind/video/audio`, mastering's
/// `master/kind`); ignored shape-wise by single-output operations, which must leave it empty.
#[derive(Clone, Debug, PartialEq)]
pub struct OutputLocation {
    pub location: Location,
    pub parameters: Map<String, Value>,
}

impl OutputLocation {
    pub fn new(location: Location) -> Self {
        Self {
            location,
            parameters: Map::new(),
        }
    }
}

/// The per-job completion callback (§7.2). The URL carries our correlation token, so it is secret.
#[derive(Clone, Debug, PartialEq)]
pub struct Callback {
    pub url: SecretString,
    /// Names of Dolby-provided headers to add (e.g. `x-job-id`); omitted when empty.
    pub headers: Vec<String>,
}

/// Everything needed to start one job.
#[derive(Clone, Debug, PartialEq)]
pub struct JobRequest {
    pub operation: Operation,
    pub inputs: Vec<Location>,
    pub outputs: Vec<OutputLocation>,
    /// Operation options merged into the top level of the body (`content`, `audio`, `loudness`…).
    pub parameters: Map<String, Value>,
    /// Fields added to every `inputs[]` entry of transcode/mastering (e.g. preview's `segment`),
    /// or to the single input's object form (`{url, region}` for enhance and analyze).
    pub input_parameters: Map<String, Value>,
    pub on_complete: Option<Callback>,
}

impl JobRequest {
    pub fn new(operation: Operation, inputs: Vec<Location>, outputs: Vec<OutputLocation>) -> Self {
        Self {
            operation,
            inputs,
            outputs,
            parameters: Map::new(),
            input_parameters: Map::new(),
            on_complete: None,
        }
    }
}

/// Keys the client owns; parameters may not set them.
const RESERVED: [&str; 5] = ["input", "output", "inputs", "outputs", "on_complete"];

/// Builds the JSON body for `POST /media/<op>`:
/// single `input`/`output` for enhance and the analyses, `input` only for diagnose, and
/// `inputs: [{source}]` / `outputs: [{destination, …}]` for transcode and mastering.
pub fn build_body(request: &JobRequest) -> Result<Value, MediaApiError> {
    let op = request.operation;
    let invalid =
        |why: String| MediaApiError::new(ErrorClass::InvalidRequest, format!("{op}: {why}"));

    let mut body = Map::new();
    for (key, value) in &request.parameters {
        if RESERVED.contains(&key.as_str()) {
            return Err(invalid(format!(
                "parameter {key:?} is set by the operator, not by parameters"
            )));
        }
        body.insert(key.clone(), value.clone());
    }

    if op.takes_several_outputs() {
        if request.inputs.is_empty() || request.outputs.is_empty() {
            return Err(invalid("needs at least one input and one output".into()));
        }
        let inputs = request.inputs.iter().map(|input| {
            let mut entry = request.input_parameters.clone();
            entry.insert("source".into(), location_json(input));
            Value::Object(entry)
        });
        body.insert("inputs".into(), Value::Array(inputs.collect()));
        let mut outputs = Vec::new();
        for output in &request.outputs {
            if output.parameters.contains_key("destination") {
                return Err(invalid(
                    "output parameter \"destination\" is set by the operator".into(),
                ));
            }
            let mut entry = output.parameters.clone();
            entry.insert("destination".into(), location_json(&output.location));
            outputs.push(Value::Object(entry));
        }
        body.insert("outputs".into(), Value::Array(outputs));
    } else {
        let [input] = request.inputs.as_slice() else {
            return Err(invalid(format!(
                "takes exactly one input, got {}",
                request.inputs.len()
            )));
        };
        // Input fields such as enhance/analyze `region` turn the input into its object form.
        let input_json = if request.input_parameters.is_empty() {
            location_json(input)
        } else {
            let mut entry = request.input_parameters.clone();
            if entry.contains_key("url") || entry.contains_key("auth") {
                return Err(invalid("input parameters may not set url or auth".into()));
            }
            match location_json(input) {
                Value::Object(fields) => entry.extend(fields),
                url => {
                    entry.insert("url".into(), url);
                }
            }
            Value::Object(entry)
        };
        body.insert("input".into(), input_json);
        let wanted = usize::from(op.has_output());
        if request.outputs.len() != wanted {
            return Err(invalid(format!(
                "takes exactly {wanted} output(s), got {}",
                request.outputs.len()
            )));
        }
        if let Some(output) = request.outputs.first() {
            if !output.parameters.is_empty() {
                return Err(invalid(
                    "per-output parameters apply to transcode and mastering only".into(),
                ));
            }
            body.insert("output".into(), location_json(&output.location));
        }
    }

    if let Some(callback) = &request.on_complete {
        let mut entry = Map::new();
        entry.insert(
            "url".into(),
            Value::String(callback.url.expose().to_owned()),
        );
        if !callback.headers.is_empty() {
            entry.insert("headers".into(), json!(callback.headers));
        }
        body.insert("on_complete".into(), Value::Object(entry));
    }
    Ok(Value::Object(body))
}

fn location_json(location: &Location) -> Value {
    match location {
        Location::Url(url) => Value::String(url.expose().to_owned()),
        Location::WithAuth { url, auth } => {
            let mut auth_json = json!({"key": auth.key, "secret": auth.secret.expose()});
            if let Some(token) = &auth.token {
                auth_json["token"] = Value::String(token.expose().to_owned());
            }
            json!({"url": url, "auth": auth_json})
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Location {
        Location::Url(SecretString::new(s))
    }

    fn out(s: &str) -> OutputLocation {
        OutputLocation::new(url(s))
    }

    fn params(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn enhance_has_single_input_and_output_plus_parameters() {
        let mut req = JobRequest::new(
            Operation::Enhance,
            vec![url("https://b.s3/in.wav?X-Amz-Signature=s")],
            vec![out("https://b.s3/out.wav?X-Amz-Signature=t")],
        );
        req.parameters = params(json!({"content": {"type": "podcast"}}));
        req.on_complete = Some(Callback {
            url: SecretString::new("https://hooks/cb?corr=1"),
            headers: vec!["x-job-id".into()],
        });
        assert_eq!(
            build_body(&req).unwrap(),
            json!({
                "input": "https://b.s3/in.wav?X-Amz-Signature=s",
                "output": "https://b.s3/out.wav?X-Amz-Signature=t",
                "content": {"type": "podcast"},
                "on_complete": {"url": "https://hooks/cb?corr=1", "headers": ["x-job-id"]}
            })
        );
    }

    #[test]
    fn analyze_family_uses_single_locations_with_auth_blocks() {
        for op in [
            Operation::Analyze,
            Operation::AnalyzeSpeech,
            Operation::AnalyzeMusic,
        ] {
            let input = Location::WithAuth {
                url: "https://b.s3.amazonaws.com/in.wav".into(),
                auth: AwsAuth {
                    key: "AKIA1".into(),
                    secret: SecretString::new("sec"),
                    token: Some(SecretString::new("sts")),
                },
            };
            let req = JobRequest::new(op, vec![input], vec![out("s3://b/out.json")]);
            assert_eq!(
                build_body(&req).unwrap(),
                json!({
                    "input": {"url": "https://b.s3.amazonaws.com/in.wav",
                              "auth": {"key": "AKIA1", "secret": "sec", "token": "sts"}},
                    "output": "s3://b/out.json"
                }),
                "{op}"
            );
        }
    }

    #[test]
    fn diagnose_has_input_only() {
        let req = JobRequest::new(Operation::Diagnose, vec![url("s3://b/in.wav")], vec![]);
        assert_eq!(build_body(&req).unwrap(), json!({"input": "s3://b/in.wav"}));
        let with_output = JobRequest::new(
            Operation::Diagnose,
            vec![url("s3://b/in.wav")],
            vec![out("s3://b/o")],
        );
        assert_eq!(
            build_body(&with_output).unwrap_err().class(),
            ErrorClass::InvalidRequest
        );
    }

    #[test]
    fn transcode_uses_sources_and_destinations_with_per_output_fields() {
        let mut o1 = out("https://b/o1.mp4?sig=1");
        o1.parameters = params(json!({"id": "hi", "kind": "mp4", "video": {"codec": "h264"}}));
        let mut o2 = out("s3://b/thumb.jpg");
        o2.parameters = params(json!({"id": "thumb", "kind": "jpg"}));
        let req = JobRequest::new(
            Operation::Transcode,
            vec![url("s3://b/in.mp4")],
            vec![o1, o2],
        );
        assert_eq!(
            build_body(&req).unwrap(),
            json!({
                "inputs": [{"source": "s3://b/in.mp4"}],
                "outputs": [
                    {"destination": "https://b/o1.mp4?sig=1", "id": "hi", "kind": "mp4",
                     "video": {"codec": "h264"}},
                    {"destination": "s3://b/thumb.jpg", "id": "thumb", "kind": "jpg"}
                ]
            })
        );
    }

    #[test]
    fn mastering_preview_and_master() {
        let mut o = out("s3://b/m.wav");
        o.parameters = params(json!({"master": {"dynamic_eq": {"preset": "a"}}, "kind": "wav"}));
        let mut preview =
            JobRequest::new(Operation::MasterPreview, vec![url("s3://b/t.wav")], vec![o]);
        preview.input_parameters = params(json!({"segment": {"start": 45, "duration": 30}}));
        assert_eq!(
            build_body(&preview).unwrap(),
            json!({
                "inputs": [{"source": "s3://b/t.wav", "segment": {"start": 45, "duration": 30}}],
                "outputs": [{"destination": "s3://b/m.wav", "kind": "wav",
                             "master": {"dynamic_eq": {"preset": "a"}}}]
            })
        );
        let master = JobRequest {
            operation: Operation::Master,
            ..preview
        };
        let body = build_body(&master).unwrap();
        assert_eq!(body["outputs"][0]["destination"], "s3://b/m.wav");
    }

    #[test]
    fn a_single_input_with_fields_takes_its_object_form() {
        let mut req = JobRequest::new(
            Operation::Enhance,
            vec![url("s3://b/i.wav")],
            vec![out("s3://b/o.wav")],
        );
        req.input_parameters = params(json!({"region": {"start": 5, "end": 30}}));
        let body = build_body(&req).unwrap();
        assert_eq!(
            body["input"],
            json!({"url": "s3://b/i.wav", "region": {"start": 5, "end": 30}})
        );
        let auth = AwsAuth {
            key: "AK".into(),
            secret: SecretString::new("SK"),
            token: None,
        };
        req.inputs = vec![Location::WithAuth {
            url: "s3://b/i.wav".into(),
            auth,
        }];
        let body = build_body(&req).unwrap();
        assert_eq!(body["input"]["auth"]["key"], "AK");
        assert_eq!(body["input"]["region"]["end"], 30);
        req.input_parameters = params(json!({"url": "s3://evil/x"}));
        assert!(build_body(&req).is_err());
    }

    #[test]
    fn parameters_cannot_overwrite_locations() {
        for key in RESERVED {
            let mut req = JobRequest::new(
                Operation::Enhance,
                vec![url("s3://b/i")],
                vec![out("s3://b/o")],
            );
            req.parameters = params(json!({key: "s3://evil/x"}));
            assert_eq!(
                build_body(&req).unwrap_err().class(),
                ErrorClass::InvalidRequest,
                "{key}"
            );
        }
        let mut o = out("s3://b/o");
        o.parameters = params(json!({"destination": "s3://evil/x"}));
        let req = JobRequest::new(Operation::Transcode, vec![url("s3://b/i")], vec![o]);
        assert!(build_body(&req).is_err());
    }

    #[test]
    fn wrong_counts_are_invalid_requests() {
        let none = JobRequest::new(Operation::Enhance, vec![], vec![out("s3://b/o")]);
        assert!(build_body(&none).is_err());
        let two = JobRequest::new(
            Operation::Enhance,
            vec![url("s3://b/i")],
            vec![out("s3://b/o"), out("s3://b/p")],
        );
        assert!(build_body(&two).is_err());
        let no_out = JobRequest::new(Operation::Transcode, vec![url("s3://b/i")], vec![]);
        assert!(build_body(&no_out).is_err());
    }

    #[test]
    fn debug_of_a_request_shows_no_secret() {
        let mut req = JobRequest::new(
            Operation::Enhance,
            vec![Location::WithAuth {
                url: "https://b/in".into(),
                auth: AwsAuth {
                    key: "AKIA".into(),
                    secret: "topsecret".into(),
                    token: None,
                },
            }],
            vec![out("https://b/o?X-Amz-Signature=sig123")],
        );
        req.on_complete = Some(Callback {
            url: "https://h/cb?corr=tok9".into(),
            headers: vec![],
        });
        let debug = format!("{req:?}");
        for secret in ["topsecret", "sig123", "tok9"] {
            assert!(!debug.contains(secret), "{debug}");
        }
    }
}
