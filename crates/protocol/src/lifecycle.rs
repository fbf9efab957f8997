//! Lifecycle events (startup, shutdown, provisioned, alive, upgraded, governor) in the classic
//! Choria format and wrapped in CloudEvents 1.0, as servers and the provisioner publish them.
//!
//! Detection on input (spec provisioner A.6): a `protocol` starting with `io.choria.lifecycle`
//! (or the legacy `choria:lifecycle:<type>:1`) is classic; `specversion` 1.0 with source
//! `io.choria.lifecycle` is a CloudEvent whose `data` is the classic event.

use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::envelope::{check_size, encode_json};
use crate::error::{json_reason, truncate, Layer, ProtocolError};
use crate::ids;
use crate::subjects::{self, SubjectError};

/// CloudEvents `source` of Choria lifecycle events.
pub const CLOUDEVENT_SOURCE: &str = "io.choria.lifecycle";
/// Largest event accepted.
pub const MAX_EVENT_BYTES: usize = 64 * 1024;

/// The kinds of lifecycle event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// The component started.
    Startup,
    /// The component is stopping.
    Shutdown,
    /// A server finished `configure` while provisioning.
    Provisioned,
    /// Periodic heartbeat.
    Alive,
    /// A server upgraded itself.
    Upgraded,
    /// Governor activity (parsed, not produced here).
    Governor,
}

impl EventType {
    /// The lowercase name used in protocols and subjects.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Startup => "startup",
            EventType::Shutdown => "shutdown",
            EventType::Provisioned => "provisioned",
            EventType::Alive => "alive",
            EventType::Upgraded => "upgraded",
            EventType::Governor => "governor",
        }
    }

    /// `io.choria.lifecycle.v1.<type>`.
    pub fn protocol(self) -> String {
        format!("io.choria.lifecycle.v1.{}", self.as_str())
    }

    fn from_protocol(protocol: &str) -> Option<Self> {
        let name = protocol
            .strip_prefix("io.choria.lifecycle.v1.")
            .or_else(|| {
                protocol
                    .strip_prefix("choria:lifecycle:")
                    .and_then(|r| r.strip_suffix(":1"))
            })?;
        name.parse().ok()
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventType {
    type Err = LifecycleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "startup" => EventType::Startup,
            "shutdown" => EventType::Shutdown,
            "provisioned" => EventType::Provisioned,
            "alive" => EventType::Alive,
            "upgraded" => EventType::Upgraded,
            "governor" => EventType::Governor,
            other => return Err(LifecycleError::UnknownType(truncate(other))),
        })
    }
}

/// Why an event could not be parsed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum LifecycleError {
    /// Too large.
    #[error("lifecycle event is {size} bytes, the limit is {MAX_EVENT_BYTES}")]
    TooLarge {
        /// Its size.
        size: usize,
    },
    /// Not JSON of the expected shape.
    #[error("invalid lifecycle event JSON: {0}")]
    Json(String),
    /// Neither classic nor CloudEvents.
    #[error("unsupported event format")]
    UnsupportedFormat,
    /// Unknown event type.
    #[error("unknown lifecycle event type {0:?}")]
    UnknownType(String),
    /// A required field is empty.
    #[error("lifecycle event field {0} is empty")]
    Empty(&'static str),
    /// The CloudEvent wrapper disagrees with its data.
    #[error("cloudevent type {outer:?} does not match its data protocol {inner:?}")]
    TypeMismatch {
        /// CloudEvent `type`.
        outer: String,
        /// Data `protocol`.
        inner: String,
    },
    /// Encoding failed.
    #[error(transparent)]
    Encode(#[from] ProtocolError),
    /// The component cannot be used in a subject.
    #[error(transparent)]
    Subject(#[from] SubjectError),
}

/// A lifecycle event in its classic form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleEvent {
    /// Which event.
    pub event_type: EventType,
    /// Event id (UUIDv4).
    pub id: String,
    /// Identity of the publisher.
    pub identity: String,
    /// Publishing component (`server`, `provision_mode_server`, `provisioner`, ...).
    pub component: String,
    /// Unix seconds.
    pub timestamp: i64,
    /// Running version (startup, alive, upgraded).
    pub version: Option<String>,
    /// Target version (upgraded).
    pub new_version: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct ClassicWire {
    protocol: String,
    #[serde(default)]
    id: String,
    #[serde(default)]
    identity: String,
    #[serde(default)]
    component: String,
    #[serde(default)]
    timestamp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    new_version: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct CloudEventWire {
    specversion: String,
    #[serde(default)]
    id: String,
    source: String,
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    subject: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    datacontenttype: String,
    #[serde(default)]
    time: String,
    data: ClassicWire,
}

impl LifecycleEvent {
    /// A new event of `event_type` at `now` with a fresh id. `version` is set for startup, alive
    /// and upgraded events (ignored for the others, as upstream).
    pub fn new(
        event_type: EventType,
        identity: &str,
        component: &str,
        version: Option<&str>,
        now: SystemTime,
    ) -> Self {
        let keeps_version = matches!(
            event_type,
            EventType::Startup | EventType::Alive | EventType::Upgraded
        );
        LifecycleEvent {
            event_type,
            id: ids::new_uuid(),
            identity: identity.to_string(),
            component: component.to_string(),
            timestamp: ids::unix_seconds(now),
            version: version.filter(|_| keeps_version).map(str::to_string),
            new_version: None,
        }
    }

    /// An `upgraded` event from `version` to `new_version`.
    pub fn upgraded(
        identity: &str,
        component: &str,
        version: &str,
        new_version: &str,
        now: SystemTime,
    ) -> Self {
        let mut e = Self::new(EventType::Upgraded, identity, component, Some(version), now);
        e.new_version = Some(new_version.to_string());
        e
    }

    /// `choria.lifecycle.event.<type>.<component>`.
    pub fn subject(&self) -> Result<String, SubjectError> {
        subjects::lifecycle_event(self.event_type.as_str(), &self.component)
    }

    /// The classic JSON encoding.
    pub fn to_choria_json(&self) -> Result<Vec<u8>, LifecycleError> {
        Ok(encode_json(Layer::Rpc, &self.to_wire())?)
    }

    /// The CloudEvents 1.0 JSON encoding (what servers publish by default).
    pub fn to_cloudevent_json(&self) -> Result<Vec<u8>, LifecycleError> {
        let time = time::OffsetDateTime::from_unix_timestamp(self.timestamp)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
        let ce = CloudEventWire {
            specversion: "1.0".into(),
            id: self.id.clone(),
            source: CLOUDEVENT_SOURCE.into(),
            kind: self.event_type.protocol(),
            subject: self.identity.clone(),
            datacontenttype: "application/json".into(),
            time,
            data: self.to_wire(),
        };
        Ok(encode_json(Layer::Rpc, &ce)?)
    }

    /// Parses an event in either format.
    pub fn parse(bytes: &[u8]) -> Result<Self, LifecycleError> {
        let event = Self::parse_subscribed(bytes)?;
        if event.component.is_empty() {
            return Err(LifecycleError::Empty("component"));
        }
        Ok(event)
    }

    /// Parses an event like [`LifecycleEvent::parse`] but allows an empty `component`, as
    /// upstream's `NewFromJSON` does: for listeners that know the component from the subject
    /// they subscribed to (the provisioner's startup listener).
    pub fn parse_subscribed(bytes: &[u8]) -> Result<Self, LifecycleError> {
        check_size(Layer::Rpc, bytes.len(), MAX_EVENT_BYTES)
            .map_err(|_| LifecycleError::TooLarge { size: bytes.len() })?;
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| LifecycleError::Json(json_reason(&e)))?;
        let protocol = value.get("protocol").and_then(|v| v.as_str()).unwrap_or("");
        if protocol.starts_with("io.choria.lifecycle") || protocol.starts_with("choria:lifecycle:")
        {
            let wire: ClassicWire =
                serde_json::from_value(value).map_err(|e| LifecycleError::Json(json_reason(&e)))?;
            return Self::from_wire(wire);
        }
        let is_cloudevent = value.get("specversion").and_then(|v| v.as_str()) == Some("1.0")
            && value.get("source").and_then(|v| v.as_str()) == Some(CLOUDEVENT_SOURCE);
        if !is_cloudevent {
            return Err(LifecycleError::UnsupportedFormat);
        }
        let ce: CloudEventWire =
            serde_json::from_value(value).map_err(|e| LifecycleError::Json(json_reason(&e)))?;
        if !ce.kind.is_empty() && ce.kind != ce.data.protocol {
            return Err(LifecycleError::TypeMismatch {
                outer: truncate(&ce.kind),
                inner: truncate(&ce.data.protocol),
            });
        }
        Self::from_wire(ce.data)
    }

    fn to_wire(&self) -> ClassicWire {
        ClassicWire {
            protocol: self.event_type.protocol(),
            id: self.id.clone(),
            identity: self.identity.clone(),
            component: self.component.clone(),
            timestamp: self.timestamp,
            version: self.version.clone(),
            new_version: self.new_version.clone(),
        }
    }

    fn from_wire(w: ClassicWire) -> Result<Self, LifecycleError> {
        let event_type = EventType::from_protocol(&w.protocol)
            .ok_or_else(|| LifecycleError::UnknownType(truncate(&w.protocol)))?;
        if w.identity.is_empty() {
            return Err(LifecycleError::Empty("identity"));
        }
        Ok(LifecycleEvent {
            event_type,
            id: w.id,
            identity: w.identity,
            component: w.component,
            timestamp: w.timestamp,
            version: w.version,
            new_version: w.new_version,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/../../../shared/vectors/lifecycle/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    #[test]
    fn parses_choria_format_vector() {
        let e = LifecycleEvent::parse(&vector("choriaFormatShutdown.json")).unwrap();
        assert_eq!(e.event_type, EventType::Shutdown);
        assert_eq!(e.id, "cb6f1dbc-d65b-49b9-907e-e4a51bee75f8");
        assert_eq!(e.identity, "dev1.devco.net");
        assert_eq!(e.component, "server");
        assert_eq!(e.timestamp, 1575482338);
        assert_eq!(e.version, None);
        assert_eq!(
            e.subject().unwrap(),
            "choria.lifecycle.event.shutdown.server"
        );
    }

    #[test]
    fn parses_cloudevent_vector() {
        let e = LifecycleEvent::parse(&vector("cloudEventFormatShutdown.json")).unwrap();
        assert_eq!(e.event_type, EventType::Shutdown);
        assert_eq!(e.identity, "ginkgo.example.net");
        assert_eq!(e.component, "ginkgo");
        assert_eq!(e.timestamp, 1535106973);
        assert_eq!(e.version.as_deref(), Some("1.2.3"));
    }

    #[test]
    fn encodings_use_upstream_field_names_and_round_trip() {
        let now = ids::from_unix_seconds(1_535_106_973);
        let mut e = LifecycleEvent::new(
            EventType::Startup,
            "n1.example.net",
            "provision_mode_server",
            Some("0.29.4"),
            now,
        );
        e.id = "01e72410-d734-4611-9485-8c6a2dd2579b".into();
        let classic = String::from_utf8(e.to_choria_json().unwrap()).unwrap();
        assert_eq!(
            classic,
            r#"{"protocol":"io.choria.lifecycle.v1.startup","id":"01e72410-d734-4611-9485-8c6a2dd2579b","identity":"n1.example.net","component":"provision_mode_server","timestamp":1535106973,"version":"0.29.4"}"#
        );
        let ce = String::from_utf8(e.to_cloudevent_json().unwrap()).unwrap();
        assert_eq!(
            ce,
            format!(
                r#"{{"specversion":"1.0","id":"01e72410-d734-4611-9485-8c6a2dd2579b","source":"io.choria.lifecycle","type":"io.choria.lifecycle.v1.startup","subject":"n1.example.net","datacontenttype":"application/json","time":"2018-08-24T10:36:13Z","data":{classic}}}"#
            )
        );
        assert_eq!(LifecycleEvent::parse(classic.as_bytes()).unwrap(), e);
        assert_eq!(LifecycleEvent::parse(ce.as_bytes()).unwrap(), e);
        assert_eq!(
            e.subject().unwrap(),
            "choria.lifecycle.event.startup.provision_mode_server"
        );

        let p = LifecycleEvent::new(
            EventType::Provisioned,
            "n1",
            "provision_mode_server",
            Some("1"),
            now,
        );
        assert_eq!(p.version, None);
        let u = LifecycleEvent::upgraded("n1", "server", "1.0", "2.0", now);
        let text = String::from_utf8(u.to_choria_json().unwrap()).unwrap();
        assert!(
            text.ends_with(r#""version":"1.0","new_version":"2.0"}"#),
            "{text}"
        );
        for t in [EventType::Alive, EventType::Shutdown] {
            let e = LifecycleEvent::new(t, "n1", "server", Some("1"), now);
            assert_eq!(
                LifecycleEvent::parse(&e.to_cloudevent_json().unwrap()).unwrap(),
                e
            );
        }
    }

    #[test]
    fn legacy_protocol_and_refusals() {
        let e = LifecycleEvent::parse(br#"{"protocol":"choria:lifecycle:startup:1","id":"x","identity":"n","component":"server","timestamp":1}"#).unwrap();
        assert_eq!(e.event_type, EventType::Startup);
        assert!(matches!(
            LifecycleEvent::parse(br#"{"hello":1}"#),
            Err(LifecycleError::UnsupportedFormat)
        ));
        assert!(matches!(
            LifecycleEvent::parse(b"[1"),
            Err(LifecycleError::Json(_))
        ));
        assert!(matches!(
            LifecycleEvent::parse(
                br#"{"protocol":"io.choria.lifecycle.v1.nope","identity":"n","component":"c"}"#
            ),
            Err(LifecycleError::UnknownType(_))
        ));
        assert!(matches!(
            LifecycleEvent::parse(
                br#"{"protocol":"io.choria.lifecycle.v1.alive","identity":"","component":"c"}"#
            ),
            Err(LifecycleError::Empty("identity"))
        ));
        let bad = br#"{"specversion":"1.0","source":"io.choria.lifecycle","type":"io.choria.lifecycle.v1.alive","data":{"protocol":"io.choria.lifecycle.v1.startup","identity":"n","component":"c"}}"#;
        assert!(matches!(
            LifecycleEvent::parse(bad),
            Err(LifecycleError::TypeMismatch { .. })
        ));
        let nameless = br#"{"protocol":"choria:lifecycle:startup:1","identity":"n3"}"#;
        assert!(matches!(
            LifecycleEvent::parse(nameless),
            Err(LifecycleError::Empty("component"))
        ));
        assert_eq!(
            LifecycleEvent::parse_subscribed(nameless).unwrap().identity,
            "n3"
        );
        let big = vec![b' '; MAX_EVENT_BYTES + 1];
        assert!(matches!(
            LifecycleEvent::parse(&big),
            Err(LifecycleError::TooLarge { .. })
        ));
        let mut e = LifecycleEvent::new(EventType::Startup, "n", "a.b", None, SystemTime::now());
        assert!(e.subject().is_err());
        e.component = "ok".into();
        assert!(e.subject().is_ok());
    }
}
