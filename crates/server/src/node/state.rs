//! The node's states, each consuming itself and returning the next: `Starting` plans,
//! `Connecting` resolves and subscribes, `Serving` answers requests, `Leaving` departs.

use std::time::{Duration, SystemTime};

use futures::stream::SelectAll;
use futures::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use choria_protocol::lifecycle::EventType;
use choria_protocol::subjects;

use super::admission::{self, ADMISSION_PAUSE};
use super::{NodeError, NodeOptions, Outcome, Phase, ALIVE_INTERVAL, REGISTRATION_INTERVAL};
use crate::agents::provision::Effect;
use crate::connection;
use crate::resolve;
use crate::session::Session;
use crate::startup::plan::{Brokers, SERVER_COMPONENT};
use crate::startup::{self, Mode, Plan};

/// Deciding the mode from the configuration and the provisioning JWT.
pub(super) struct Starting<'a>(pub(super) &'a NodeOptions);

impl Starting<'_> {
    pub(super) fn plan(self, now: SystemTime) -> Result<Connecting, NodeError> {
        let startup = startup::decide(self.0, now)?;
        subjects::validate_identity(&startup.identity).map_err(NodeError::Identity)?;
        tracing::info!(identity = %startup.identity, mode = ?startup.mode, reason = %startup.reason, "starting node");
        let plan = startup::plan(&startup, &self.0.config_file, now)?;
        for (key, why) in startup::plan::unsupported_keys(&startup.config) {
            tracing::warn!(identity = %startup.identity, %key, "{key} is not supported and is ignored: {why}");
        }
        Ok(Connecting { plan })
    }
}

/// Resolving the plan's brokers, connecting and subscribing.
pub(super) struct Connecting {
    plan: Plan,
}

impl Connecting {
    pub(super) async fn connect(
        self,
        resolver: Option<&resolve::Resolver>,
        cancel: &CancellationToken,
    ) -> Result<Serving, NodeError> {
        let servers = match &self.plan.brokers {
            Brokers::Provisioning { urls, srv_domain } => {
                let servers =
                    resolve::provisioning::targets(urls, srv_domain, resolver, cancel).await?;
                let list: Vec<String> = servers.iter().map(ToString::to_string).collect();
                tracing::info!("Entering provision mode with servers {}", list.join(", "));
                servers
            }
            Brokers::Fixed(servers) => servers.clone(),
        };
        // While provisioning, every connect is watched: the node announces itself only
        // once the broker has admitted it, and again after every reconnect.
        let connects = (self.plan.mode == Mode::Provisioning).then(connection::Connects::new);
        let admissions = match &connects {
            Some(connects) => Some(Admissions {
                connects: connects.subscribe(),
                echo: subjects::node(subjects::PROVISIONING_COLLECTIVE, &self.plan.identity)
                    .map_err(NodeError::Identity)?,
            }),
            None => None,
        };
        let login = connection::Login {
            connects,
            ..self.plan.connect_spec(servers).login()
        };
        let client = login.connect_until_cancelled(cancel).await?;
        let mut messages = futures::stream::select_all(Vec::new());
        for subject in &self.plan.subjects {
            messages.push(choria_connect::subscribe(&client, subject).await?);
        }
        Ok(Serving {
            client,
            messages,
            session: Session::new(&self.plan),
            phase: phase_of(self.plan.mode),
            collectives: self.plan.node.collectives.clone(),
            admissions,
        })
    }
}

/// The phase a connected node in `mode` reports.
fn phase_of(mode: Mode) -> Phase {
    match mode {
        Mode::Provisioning => Phase::Provisioning,
        Mode::Normal => Phase::InFleet,
    }
}

/// Connected: answers requests until an action or cancellation ends the connection.
pub(super) struct Serving {
    client: async_nats::Client,
    messages: SelectAll<async_nats::Subscriber>,
    session: Session,
    phase: Phase,
    collectives: Vec<String>,
    /// Watches connects while provisioning; `None` in normal mode.
    admissions: Option<Admissions>,
}

/// What a provisioning-mode node needs to prove each connection admitted.
struct Admissions {
    /// Counts connects.
    connects: watch::Receiver<u64>,
    /// The node subject, where the broker's answer arrives.
    echo: String,
}

type Probe = futures::future::BoxFuture<'static, admission::AdmissionError>;

fn no_probe() -> Probe {
    Box::pin(std::future::pending())
}

/// The next connect counted by `admissions`; never, in normal mode.
async fn next_connect(admissions: &mut Option<Admissions>) {
    let Some(admissions) = admissions else {
        return std::future::pending().await;
    };
    if admissions.connects.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

impl Serving {
    pub(super) async fn serve(
        mut self,
        phase: &watch::Sender<Phase>,
        collectives: &watch::Sender<Vec<String>>,
        cancel: &CancellationToken,
    ) -> Result<Leaving, NodeError> {
        collectives.send_replace(std::mem::take(&mut self.collectives));
        let mut ready = self.admissions.is_none();
        if ready {
            publish_event(&self.client, &self.session, EventType::Startup).await;
            tracing::info!(node = %self.session.identity, phase = ?self.phase, "node ready");
            phase.send_replace(self.phase.clone());
        }
        let mut probe = no_probe();
        // Whether this connection is still to be proven admitted.
        let mut asking = false;
        let start = tokio::time::Instant::now();
        let mut alive = tokio::time::interval_at(
            start + ALIVE_INTERVAL.mul_f64(rand::random::<f64>()),
            ALIVE_INTERVAL,
        );
        let splay =
            Duration::from_millis(rand::Rng::gen_range(&mut rand::thread_rng(), 1000..4000));
        let mut registration = tokio::time::interval_at(start + splay, REGISTRATION_INTERVAL);
        loop {
            let message = tokio::select! {
                _ = registration.tick(), if self.session.registers() => {
                    self.publish_registration().await;
                    continue;
                }
                () = cancel.cancelled() => return Ok(self.leave(Departure::Cancelled)),
                () = next_connect(&mut self.admissions) => {
                    // A probe of an earlier connection proves nothing about this one.
                    probe = self.probe(Duration::ZERO);
                    asking = true;
                    continue;
                }
                err = &mut probe => {
                    tracing::warn!(node = %self.session.identity, error = %err, "not admitted by the broker yet, asking again");
                    probe = self.probe(ADMISSION_PAUSE);
                    continue;
                }
                _ = alive.tick(), if self.session.component == SERVER_COMPONENT => {
                    publish_event(&self.client, &self.session, EventType::Alive).await;
                    continue;
                }
                message = self.messages.next() => message.ok_or(NodeError::SubscriptionClosed)?,
            };
            // Whatever arrives proves the broker admitted this connection.
            if asking {
                asking = false;
                probe = no_probe();
                self.announce(&mut ready, phase).await;
            }
            // Requests carry no status; the broker's answers to admission probes do.
            if message.status.is_some() {
                continue;
            }
            let Some(handled) = self
                .session
                .handle(&message.payload, SystemTime::now())
                .await
            else {
                continue;
            };
            if let Some((reply_to, encoded)) = handled.reply {
                match encoded {
                    Ok(bytes) => {
                        if let Err(err) = self.client.publish(reply_to, bytes.into()).await {
                            tracing::warn!(node = %self.session.identity, error = %err, "could not publish reply");
                        }
                    }
                    Err(err) => {
                        tracing::warn!(node = %self.session.identity, error = %err, "could not encode reply")
                    }
                }
                let _ = self.client.flush().await;
            }
            match handled.effect {
                Effect::None => {}
                Effect::Provisioned => {
                    publish_event(&self.client, &self.session, EventType::Provisioned).await;
                    phase.send_replace(Phase::Configured);
                }
                Effect::Restart { after } => return Ok(self.leave(Departure::Restart { after })),
                Effect::Shutdown { after } => return Ok(self.leave(Departure::Shutdown { after })),
            }
        }
    }

    /// Asks the broker, after `pause`, for an answer proving this connection admitted.
    fn probe(&self, pause: Duration) -> Probe {
        let echo = self
            .admissions
            .as_ref()
            .map(|a| a.echo.clone())
            .unwrap_or_default();
        Box::pin(admission::ask(self.client.clone(), echo, pause))
    }

    /// Publishes the startup event on a connection the broker admitted; the first time,
    /// the node is ready.
    async fn announce(&self, ready: &mut bool, phase: &watch::Sender<Phase>) {
        publish_event(&self.client, &self.session, EventType::Startup).await;
        if *ready {
            tracing::info!(node = %self.session.identity, "announced again after reconnecting");
        } else {
            *ready = true;
            tracing::info!(node = %self.session.identity, phase = ?self.phase, "node ready");
            phase.send_replace(self.phase.clone());
        }
    }

    async fn publish_registration(&mut self) {
        let Some(body) = self.session.registration(SystemTime::now()) else {
            return;
        };
        let subject = subjects::PROVISIONING_REGISTRATION_SUBJECT;
        if let Err(err) = self.client.publish(subject, body.into()).await {
            tracing::warn!(node = %self.session.identity, error = %err, "could not publish registration data");
        }
    }

    fn leave(self, departure: Departure) -> Leaving {
        Leaving {
            client: self.client,
            session: self.session,
            departure,
        }
    }
}

/// Why and how a connection is left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Departure {
    /// Cancelled: announce `shutdown` and go at once.
    Cancelled,
    /// `restart`: announce `shutdown`, wait `after`, come back.
    Restart { after: Duration },
    /// `shutdown`: wait `after`, then announce `shutdown` and stop.
    Shutdown { after: Duration },
}

impl Departure {
    /// Whether `shutdown` is announced before the wait, the wait, and the outcome.
    fn schedule(self) -> (bool, Duration, Outcome) {
        match self {
            Departure::Cancelled => (true, Duration::ZERO, Outcome::Cancelled),
            Departure::Restart { after } => (true, after, Outcome::Restart),
            Departure::Shutdown { after } => (false, after, Outcome::Shutdown),
        }
    }
}

/// Leaving the broker in the order the departure asks for.
pub(super) struct Leaving {
    client: async_nats::Client,
    session: Session,
    departure: Departure,
}

impl Leaving {
    pub(super) async fn leave(self, cancel: &CancellationToken) -> Outcome {
        let (announce_first, wait, outcome) = self.departure.schedule();
        if announce_first {
            publish_event(&self.client, &self.session, EventType::Shutdown).await;
            let _ = self.client.flush().await;
        }
        if outcome == Outcome::Cancelled {
            return outcome;
        }
        tokio::select! {
            () = cancel.cancelled() => return Outcome::Cancelled,
            () = tokio::time::sleep(wait) => {}
        }
        if !announce_first {
            publish_event(&self.client, &self.session, EventType::Shutdown).await;
        }
        let _ = self.client.drain().await;
        outcome
    }
}

async fn publish_event(client: &async_nats::Client, session: &Session, kind: EventType) {
    match session.lifecycle(kind, SystemTime::now()) {
        Ok((subject, body)) => {
            if let Err(err) = client.publish(subject, body.into()).await {
                tracing::warn!(node = %session.identity, error = %err, "could not publish lifecycle event");
            }
        }
        Err(err) => {
            tracing::warn!(node = %session.identity, error = %err, "could not build lifecycle event")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::RestartPolicy;
    use crate::startup::StartupError;

    #[test]
    fn restart_announces_before_waiting_and_shutdown_after() {
        let after = Duration::from_secs(3);
        assert_eq!(
            Departure::Restart { after }.schedule(),
            (true, after, Outcome::Restart)
        );
        assert_eq!(
            Departure::Shutdown { after }.schedule(),
            (false, after, Outcome::Shutdown)
        );
        assert_eq!(
            Departure::Cancelled.schedule(),
            (true, Duration::ZERO, Outcome::Cancelled)
        );
    }

    #[test]
    fn a_connected_node_reports_its_mode() {
        assert_eq!(phase_of(Mode::Provisioning), Phase::Provisioning);
        assert_eq!(phase_of(Mode::Normal), Phase::InFleet);
    }

    #[test]
    fn starting_plans_or_fails_before_connecting() {
        let dir = tempfile::tempdir().unwrap();
        let options = NodeOptions {
            config_file: dir.path().join("server.conf"),
            provisioning_jwt: Some(dir.path().join("missing.jwt")),
            identity: Some("n1.example.net".into()),
            restart: RestartPolicy::InPlace,
        };
        let err = Starting(&options).plan(SystemTime::now()).err().unwrap();
        assert!(
            matches!(err, NodeError::Startup(StartupError::NothingToRun(_))),
            "{err}"
        );
        std::fs::write(dir.path().join("server.conf"), "").unwrap();
        let bad_identity = NodeOptions {
            identity: Some("a.*".into()),
            ..options.clone()
        };
        let err = Starting(&bad_identity)
            .plan(SystemTime::now())
            .err()
            .unwrap();
        assert!(matches!(err, NodeError::Identity(_)), "{err}");
        // A kept configuration in normal mode without brokers is refused by the plan.
        let err = Starting(&options).plan(SystemTime::now()).err().unwrap();
        assert!(
            matches!(err, NodeError::Startup(StartupError::NoBrokers)),
            "{err}"
        );
    }
}
