//! The helper program contract (spec §2): the JSON the provisioner sends and expects, and
//! the two ways of running the helper (one process per node, or one persistent process).

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::Mutex;

use crate::metrics::Metrics;
use crate::settings::HelperMode;

/// Largest helper reply we accept (stdout of one run, or one line in persistent mode).
pub const MAX_HELPER_OUTPUT: usize = 1024 * 1024;
/// Most stderr we keep from a helper for the log.
pub const MAX_HELPER_STDERR: usize = 16 * 1024;

/// The node's CSR as given to the helper (`csr` key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CsrInput {
    /// PEM `CERTIFICATE REQUEST`.
    pub csr: String,
    /// PEM public key of the node.
    pub public_key: String,
    /// Where the node keeps its TLS files.
    pub ssldir: String,
}

/// The node's ed25519 key as given to the helper (`ed25519_pubkey` key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ed25519Input {
    /// Hex public key.
    pub public_key: String,
    /// Directory of the node's `server.seed` / `server.jwt`.
    pub directory: String,
    /// Hex nonce signature, already verified.
    pub signature: String,
}

/// The request on the helper's stdin; field order is the upstream key order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HelperRequest {
    /// Node identity.
    pub identity: String,
    /// CSR when `features.pki`.
    pub csr: Option<CsrInput>,
    /// ed25519 key when `features.ed25519`.
    pub ed25519_pubkey: Option<Ed25519Input>,
    /// JSON text of the node's inventory (keys sorted).
    pub inventory: String,
    /// Verified provisioning JWT claims when `features.jwt`.
    pub jwt: Option<serde_json::Value>,
}

/// Server JWT claims the helper may set (spec §4.3); other keys are ignored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerClaimsInput {
    /// Organisation.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub ou: String,
    /// Absolute expiry (Unix seconds); values in the past are treated as relative
    /// seconds (B3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// Extension (B3): explicit validity in the §3.3 duration syntax, e.g. `5y`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validity: Option<String>,
    /// Collectives.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub collectives: Vec<String>,
    /// Extra subjects the server may publish to.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pub_subjects: Vec<String>,
    /// Server permissions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permissions: Option<ServerPermissionsInput>,
}

/// Server permission flags.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerPermissionsInput {
    /// May publish to Choria Submission.
    pub submission: bool,
    /// May use Choria Streams.
    pub streams: bool,
    /// May use Choria Governors.
    pub governor: bool,
    /// May host services.
    pub service_host: bool,
}

/// The helper's reply (spec §2.3). Unknown keys are ignored, wrong types are errors.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct HelperReply {
    /// Stop this pass and try again later.
    #[serde(rename = "defer")]
    pub defer: bool,
    /// Message logged with defer/shutdown.
    pub msg: String,
    /// PEM certificate.
    pub certificate: String,
    /// PEM CA bundle.
    pub ca: String,
    /// Node TLS directory.
    pub ssldir: String,
    /// PEM RSA private key to deliver.
    #[serde(serialize_with = "expose")]
    pub key: SecretString,
    /// The node's new configuration.
    pub configuration: BTreeMap<String, String>,
    /// Action policy files.
    pub action_policies: BTreeMap<String, String>,
    /// OPA policy files.
    pub opa_policies: BTreeMap<String, String>,
    /// Server JWT claims.
    pub server_claims: Option<ServerClaimsInput>,
    /// Target version.
    pub upgrade: String,
    /// Shut the node down instead of configuring it.
    pub shutdown: bool,
}

// A helper (the demo's, say) writes the key it hands over as plain JSON.
fn expose<S: Serializer>(secret: &SecretString, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(secret.expose_secret())
}

/// Why a helper run failed; the pass of that node fails, nothing else.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HelperError {
    /// The program could not be started.
    #[error("cannot start {program}: {source}")]
    Start {
        /// Program path.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// Writing the request or reading the reply failed.
    #[error("helper {program} i/o failed: {source}")]
    Io {
        /// Program path.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// The helper did not answer in time and was killed.
    #[error("helper {program} did not answer within {timeout:?}; it was killed")]
    Timeout {
        /// Program path.
        program: String,
        /// The limit.
        timeout: Duration,
    },
    /// The helper exited with a failure status.
    #[error("could not run helper {program}: exited with {status}; stderr: {stderr}")]
    Exit {
        /// Program path.
        program: String,
        /// Exit status text.
        status: String,
        /// Captured stderr (capped).
        stderr: String,
    },
    /// Nothing on stdout.
    #[error("cannot read {program} output: zero bytes received; stderr: {stderr}")]
    Empty {
        /// Program path.
        program: String,
        /// Captured stderr (capped).
        stderr: String,
    },
    /// The reply is larger than [`MAX_HELPER_OUTPUT`].
    #[error("helper {program} output exceeds {MAX_HELPER_OUTPUT} bytes")]
    TooLarge {
        /// Program path.
        program: String,
    },
    /// The persistent helper closed its stdout (it died); it is restarted next time.
    #[error("persistent helper {program} exited before answering; stderr: {stderr}")]
    Died {
        /// Program path.
        program: String,
        /// Captured stderr (capped).
        stderr: String,
    },
    /// The reply was not the JSON of spec §2.3.
    #[error("cannot decode output from {program}: {source}")]
    Decode {
        /// Program path.
        program: String,
        /// serde's error (line/column, type).
        source: serde_json::Error,
    },
    /// The request, or the configuration it returned, could not be encoded (should not
    /// happen for valid input).
    #[error("cannot encode helper data: {0}")]
    Encode(#[source] serde_json::Error),
}

/// Runs the configured helper in its mode; cheap to clone.
#[derive(Clone, educe::Educe)]
#[educe(Debug)]
pub struct Helper {
    command: Arc<Vec<String>>,
    timeout: Duration,
    // Whether the helper is persistent, not its process.
    #[educe(Debug(method(debug_is_some)))]
    persistent: Option<Arc<Mutex<Slot>>>,
    #[educe(Debug(ignore))]
    metrics: Option<Arc<Metrics>>,
}

/// The persistent helper process, and whether one has run before (a new one is a restart).
#[derive(Default)]
struct Slot {
    process: Option<PersistentProcess>,
    started_before: bool,
}

fn debug_is_some<T>(value: &Option<T>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    std::fmt::Debug::fmt(&value.is_some(), f)
}

impl Helper {
    /// A helper for `command` (program then arguments; must not be empty).
    pub fn new(command: Vec<String>, mode: HelperMode, timeout: Duration) -> Helper {
        Helper {
            command: Arc::new(command),
            timeout,
            persistent: match mode {
                HelperMode::Exec => None,
                HelperMode::Persistent => Some(Arc::new(Mutex::new(Slot::default()))),
            },
            metrics: None,
        }
    }

    /// Counts persistent-helper restarts in `metrics` (`helper_restarts`).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Helper {
        self.metrics = Some(metrics);
        self
    }

    fn program(&self) -> String {
        self.command.first().cloned().unwrap_or_default()
    }

    /// Asks the helper about one node.
    pub async fn run(&self, request: &HelperRequest) -> Result<HelperReply, HelperError> {
        let body = serde_json::to_vec(request).map_err(HelperError::Encode)?;
        let output = match &self.persistent {
            None => self.run_exec(&body).await?,
            Some(slot) => self.run_persistent(slot, &body).await?,
        };
        decode_reply(&self.program(), &output)
    }

    async fn run_exec(&self, body: &[u8]) -> Result<Vec<u8>, HelperError> {
        let program = self.program();
        let mut child = self.spawn()?;
        let group = child.id();
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let work = async {
            if let Some(mut stdin) = stdin {
                // A helper may exit without reading stdin; that is its business, and
                // its exit status tells the rest.
                let _ = stdin.write_all(body).await;
                drop(stdin);
            }
            let out = async {
                match stdout {
                    Some(out) => read_capped(out, MAX_HELPER_OUTPUT).await,
                    None => Ok((Vec::new(), false)),
                }
            };
            let err = async {
                match stderr {
                    Some(err) => read_capped(err, MAX_HELPER_STDERR).await,
                    None => Ok((Vec::new(), false)),
                }
            };
            let (out, err) = tokio::join!(out, err);
            let status = child.wait().await;
            (out, err, status)
        };
        let (out, err, status) = match tokio::time::timeout(self.timeout, work).await {
            Ok(done) => done,
            Err(_) => {
                // kill_on_drop reaps the child when `work` (owning it) is dropped; its
                // children are only reached through the group.
                kill_group(group);
                return Err(HelperError::Timeout {
                    program,
                    timeout: self.timeout,
                });
            }
        };
        let io = |source| HelperError::Io {
            program: program.clone(),
            source,
        };
        let (out, truncated) = out.map_err(io)?;
        let stderr_text = err
            .map(|(bytes, _)| String::from_utf8_lossy(&bytes).trim().to_string())
            .unwrap_or_default();
        let status = status.map_err(io)?;
        if !stderr_text.is_empty() {
            tracing::info!(helper = %program, stderr = %stderr_text, "helper wrote to stderr");
        }
        if !status.success() {
            return Err(HelperError::Exit {
                program,
                status: status.to_string(),
                stderr: stderr_text,
            });
        }
        if truncated {
            return Err(HelperError::TooLarge { program });
        }
        if out.iter().all(u8::is_ascii_whitespace) {
            return Err(HelperError::Empty {
                program,
                stderr: stderr_text,
            });
        }
        Ok(out)
    }

    async fn run_persistent(
        &self,
        slot: &Mutex<Slot>,
        body: &[u8],
    ) -> Result<Vec<u8>, HelperError> {
        let program = self.program();
        // One request at a time: the line protocol has no request ids, so serialising
        // is what keeps replies matched to requests.
        let mut slot = slot.lock().await;
        if slot.process.as_mut().is_some_and(|p| !p.alive()) {
            tracing::warn!(helper = %program, "persistent helper has exited");
            slot.process = None;
        }
        if slot.process.is_none() {
            let process = PersistentProcess::start(self.spawn()?, &program);
            if slot.started_before {
                let restarts = self.metrics.as_ref().map(|m| {
                    m.helper_restarts
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                        + 1
                });
                tracing::warn!(
                    helper = %program,
                    pid = process.child.id(),
                    restarts,
                    "restarted the persistent helper"
                );
            }
            slot.process = Some(process);
            slot.started_before = true;
        }
        let guard = &mut slot.process;
        let Some(process) = guard.as_mut() else {
            return Err(HelperError::Died {
                program,
                stderr: String::new(),
            });
        };
        let result = tokio::time::timeout(self.timeout, process.exchange(body)).await;
        match result {
            Ok(Ok(line)) => Ok(line),
            Ok(Err(err)) => {
                let stderr = process.stderr_tail().await;
                *guard = None;
                Err(match err {
                    ExchangeError::Io(source) => HelperError::Io { program, source },
                    ExchangeError::Eof => HelperError::Died { program, stderr },
                    ExchangeError::TooLong => HelperError::TooLarge { program },
                })
            }
            Err(_) => {
                // The process may be half way through a reply; only a restart puts
                // the stream back in step.
                kill_group(process.child.id());
                *guard = None;
                Err(HelperError::Timeout {
                    program,
                    timeout: self.timeout,
                })
            }
        }
    }

    fn spawn(&self) -> Result<Child, HelperError> {
        let program = self.program();
        let mut command = Command::new(&program);
        command
            .args(self.command.iter().skip(1))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so a timeout kills what the helper started too.
            .process_group(0)
            .kill_on_drop(true);
        command
            .spawn()
            .map_err(|source| HelperError::Start { program, source })
    }
}

/// Kills the process group a helper leads (its pid is the group id, see `spawn`).
fn kill_group(leader: Option<u32>) {
    let Some(pid) = leader.and_then(|pid| i32::try_from(pid).ok()) else {
        return;
    };
    if let Err(e) = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    ) {
        tracing::debug!(group = pid, error = %e, "could not kill the helper's process group");
    }
}

/// Decodes a helper reply, mapping serde errors to [`HelperError::Decode`].
pub fn decode_reply(program: &str, output: &[u8]) -> Result<HelperReply, HelperError> {
    serde_json::from_slice(output).map_err(|source| HelperError::Decode {
        program: program.to_string(),
        source,
    })
}

async fn read_capped<R: tokio::io::AsyncRead + Unpin>(
    reader: R,
    cap: usize,
) -> std::io::Result<(Vec<u8>, bool)> {
    let mut buf = Vec::new();
    let mut limited = reader.take(cap as u64 + 1);
    limited.read_to_end(&mut buf).await?;
    let truncated = buf.len() > cap;
    if truncated {
        buf.truncate(cap);
        // Keep draining so the child is not blocked on a full pipe before we reap it.
        let mut rest = limited.into_inner();
        let mut sink = [0u8; 8192];
        while rest.read(&mut sink).await? > 0 {}
    }
    Ok((buf, truncated))
}

enum ExchangeError {
    Io(std::io::Error),
    Eof,
    TooLong,
}

struct PersistentProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Option<BufReader<ChildStdout>>,
    stderr: Arc<Mutex<String>>,
}

impl PersistentProcess {
    fn start(mut child: Child, program: &str) -> PersistentProcess {
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().map(BufReader::new);
        let stderr = Arc::new(Mutex::new(String::new()));
        if let Some(err) = child.stderr.take() {
            let sink = stderr.clone();
            let program = program.to_string();
            tokio::spawn(async move {
                let mut lines = BufReader::new(err).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let line: String = line.chars().take(2048).collect();
                    tracing::info!(helper = %program, stderr = %line, "helper wrote to stderr");
                    let mut tail = sink.lock().await;
                    tail.push_str(&line);
                    tail.push('\n');
                    if tail.len() > MAX_HELPER_STDERR {
                        let cut = tail.len() - MAX_HELPER_STDERR;
                        let cut = (cut..tail.len())
                            .find(|i| tail.is_char_boundary(*i))
                            .unwrap_or(tail.len());
                        tail.drain(..cut);
                    }
                }
            });
        }
        PersistentProcess {
            child,
            stdin,
            stdout,
            stderr,
        }
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    async fn stderr_tail(&self) -> String {
        // Give the stderr reader a moment to collect a dying helper's last words.
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.stderr.lock().await.trim().to_string()
    }

    async fn exchange(&mut self, body: &[u8]) -> Result<Vec<u8>, ExchangeError> {
        let (Some(stdin), Some(stdout)) = (self.stdin.as_mut(), self.stdout.as_mut()) else {
            return Err(ExchangeError::Eof);
        };
        let mut line = body.to_vec();
        line.push(b'\n');
        stdin.write_all(&line).await.map_err(ExchangeError::Io)?;
        stdin.flush().await.map_err(ExchangeError::Io)?;
        loop {
            let mut reply = Vec::new();
            let mut limited = (&mut *stdout).take(MAX_HELPER_OUTPUT as u64 + 1);
            let n = limited
                .read_until(b'\n', &mut reply)
                .await
                .map_err(ExchangeError::Io)?;
            if n == 0 {
                return Err(ExchangeError::Eof);
            }
            if reply.len() > MAX_HELPER_OUTPUT {
                return Err(ExchangeError::TooLong);
            }
            if reply.last() != Some(&b'\n') {
                // EOF in the middle of a line: the helper died mid-reply.
                return Err(ExchangeError::Eof);
            }
            // Blank lines between replies are tolerated.
            if !reply.iter().all(u8::is_ascii_whitespace) {
                return Ok(reply);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> HelperRequest {
        HelperRequest {
            identity: "n1.example.net".into(),
            csr: None,
            ed25519_pubkey: None,
            inventory: "{}".into(),
            jwt: None,
        }
    }

    fn sh(script: &str, mode: HelperMode, timeout_ms: u64) -> Helper {
        Helper::new(
            vec!["/bin/sh".into(), "-c".into(), script.into()],
            mode,
            Duration::from_millis(timeout_ms),
        )
    }

    #[test]
    fn request_keys_are_in_upstream_order() {
        let text = serde_json::to_string(&request()).expect("encode");
        assert_eq!(
            text,
            r#"{"identity":"n1.example.net","csr":null,"ed25519_pubkey":null,"inventory":"{}","jwt":null}"#
        );
    }

    #[test]
    fn reply_is_lenient_about_keys_and_strict_about_types() {
        let ok = decode_reply("h", br#"{"configuration":{"a":"b"},"extra":[1]}"#).expect("ok");
        assert_eq!(ok.configuration.get("a").map(String::as_str), Some("b"));
        let err = decode_reply("h", br#"{"configuration":{"a":1}}"#).expect_err("type");
        assert!(matches!(err, HelperError::Decode { .. }), "{err:?}");
        let err = decode_reply("h", br#"{"defer":"yes"}"#).expect_err("type");
        assert!(matches!(err, HelperError::Decode { .. }), "{err:?}");
    }

    #[test]
    fn reply_key_stays_out_of_debug_but_not_out_of_json() {
        let key = "-----BEGIN RSA PRIVATE KEY-----\nc2VjcmV0\n-----END RSA PRIVATE KEY-----";
        let json = serde_json::json!({"msg": "ok", "key": key}).to_string();
        let reply = decode_reply("h", json.as_bytes()).expect("reply");
        assert_eq!(reply.key.expose_secret(), key);
        let text = format!("{reply:?}");
        assert!(!text.contains("c2VjcmV0"), "{text}");
        let again = serde_json::to_value(&reply).expect("encode");
        assert_eq!(again["key"], key);
    }

    #[tokio::test]
    async fn exec_helper_reads_stdin_and_answers() {
        let helper = sh(
            r#"read line; case "$line" in *n1.example.net*) echo '{"msg":"seen","configuration":{"x":"y"}}';; *) exit 3;; esac"#,
            HelperMode::Exec,
            5000,
        );
        let reply = helper.run(&request()).await.expect("reply");
        assert_eq!(reply.msg, "seen");
    }

    #[tokio::test]
    async fn exec_helper_failures_are_classified() {
        let err = sh("echo boom >&2; exit 4", HelperMode::Exec, 5000)
            .run(&request())
            .await
            .expect_err("exit");
        match err {
            HelperError::Exit { stderr, .. } => assert_eq!(stderr, "boom"),
            other => panic!("{other:?}"),
        }
        let err = sh("exit 0", HelperMode::Exec, 5000)
            .run(&request())
            .await
            .expect_err("empty");
        assert!(matches!(err, HelperError::Empty { .. }), "{err:?}");
        let err = sh("echo not json", HelperMode::Exec, 5000)
            .run(&request())
            .await
            .expect_err("garbage");
        assert!(matches!(err, HelperError::Decode { .. }), "{err:?}");
        let err = sh("sleep 30", HelperMode::Exec, 300)
            .run(&request())
            .await
            .expect_err("hang");
        assert!(matches!(err, HelperError::Timeout { .. }), "{err:?}");
        let err = sh("head -c 2000000 /dev/zero", HelperMode::Exec, 5000)
            .run(&request())
            .await
            .expect_err("big");
        assert!(matches!(err, HelperError::TooLarge { .. }), "{err:?}");
        let err = Helper::new(
            vec!["/nonexistent/helper".into()],
            HelperMode::Exec,
            Duration::from_secs(1),
        )
        .run(&request())
        .await
        .expect_err("missing");
        assert!(matches!(err, HelperError::Start { .. }), "{err:?}");
    }

    fn is_alive(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.trim().chars().next());
            !matches!(state, Some('Z' | 'X'))
        })
    }

    #[tokio::test]
    async fn a_timed_out_exec_helper_leaves_no_grandchild_alive() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pids = dir.path().join("pids");
        let script = format!(
            "sleep 300 & echo $! >> {p}; sleep 300 & echo $! >> {p}; sleep 300 & echo $! >> {p}; wait",
            p = pids.display()
        );
        let err = sh(&script, HelperMode::Exec, 500)
            .run(&request())
            .await
            .expect_err("hang");
        assert!(matches!(err, HelperError::Timeout { .. }), "{err:?}");
        let started: Vec<u32> = std::fs::read_to_string(&pids)
            .expect("pids written")
            .lines()
            .map(|l| l.trim().parse().expect("pid"))
            .collect();
        assert_eq!(started.len(), 3);
        // SIGKILL is delivered at once, but the kernel and init need a moment to reap.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while started.iter().any(|p| is_alive(*p)) && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let alive: Vec<u32> = started.into_iter().filter(|p| is_alive(*p)).collect();
        assert!(alive.is_empty(), "grandchildren still alive: {alive:?}");
    }

    #[tokio::test]
    async fn persistent_helper_keeps_one_process_and_restarts_after_death() {
        // Replies with its own PID so we can tell processes apart; dies on "die".
        let script = r#"while read line; do case "$line" in *die*) echo bye >&2; exit 1;; esac; echo "{\"msg\":\"$$\"}"; done"#;
        let metrics = Arc::new(Metrics::new("test"));
        let helper = sh(script, HelperMode::Persistent, 5000).with_metrics(metrics.clone());
        let first = helper.run(&request()).await.expect("first").msg;
        let second = helper.run(&request()).await.expect("second").msg;
        assert_eq!(first, second, "same process serves both requests");
        assert_eq!(
            metrics
                .helper_restarts
                .load(std::sync::atomic::Ordering::Relaxed),
            0
        );
        let mut dying = request();
        dying.identity = "die".into();
        let err = helper.run(&dying).await.expect_err("died");
        assert!(matches!(err, HelperError::Died { .. }), "{err:?}");
        let third = helper.run(&request()).await.expect("restarted").msg;
        assert_ne!(first, third, "a new process after the old one died");
        assert_eq!(
            metrics
                .helper_restarts
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        assert!(metrics
            .encode()
            .contains("choria_provisioner_helper_restarts_total{site=\"test\"} 1"));
    }

    #[tokio::test]
    async fn persistent_helper_that_hangs_is_killed_and_replaced() {
        let script = r#"while read line; do case "$line" in *hang*) sleep 30;; esac; echo "{\"msg\":\"$$\"}"; done"#;
        let helper = sh(script, HelperMode::Persistent, 500);
        let first = helper.run(&request()).await.expect("first").msg;
        let mut hang = request();
        hang.identity = "hang".into();
        let err = helper.run(&hang).await.expect_err("hang");
        assert!(matches!(err, HelperError::Timeout { .. }), "{err:?}");
        let next = helper.run(&request()).await.expect("next").msg;
        assert_ne!(first, next);
    }

    #[tokio::test]
    async fn persistent_helper_serialises_concurrent_requests() {
        let script = r#"while read line; do id=$(echo "$line" | sed 's/.*"identity":"\([^"]*\)".*/\1/'); echo "{\"msg\":\"$id\"}"; done"#;
        let helper = sh(script, HelperMode::Persistent, 5000);
        let mut tasks = Vec::new();
        for i in 0..8 {
            let helper = helper.clone();
            tasks.push(tokio::spawn(async move {
                let mut req = request();
                req.identity = format!("node{i}");
                (i, helper.run(&req).await.expect("reply").msg)
            }));
        }
        for task in tasks {
            let (i, msg) = task.await.expect("join");
            assert_eq!(msg, format!("node{i}"));
        }
    }
}
