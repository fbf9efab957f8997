//! A small authoritative DNS server on 127.0.0.1 (UDP and TCP on one port) answering SRV
//! and A questions from records the test sets, so SRV resolution is tested against real
//! DNS messages. Unknown names get NXDOMAIN; known names without records of the asked
//! type get an empty NOERROR answer. Records carry TTL 0 so resolvers do not cache them.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use hickory_resolver::proto::op::{Edns, Message, Metadata, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, SRV};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

use crate::TestkitError;

/// One SRV record to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvAnswer {
    /// Priority (lower first).
    pub priority: u16,
    /// Weight within a priority.
    pub weight: u16,
    /// Port.
    pub port: u16,
    /// Target host.
    pub target: String,
}

#[derive(Debug, Default)]
struct Zone {
    srv: HashMap<String, Vec<SrvAnswer>>,
    a: HashMap<String, Vec<Ipv4Addr>>,
}

/// A running DNS server; stops when dropped.
#[derive(Debug)]
pub struct TestDns {
    addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    questions: Arc<AtomicUsize>,
    tasks: Vec<JoinHandle<()>>,
}

impl TestDns {
    /// Starts serving on a free 127.0.0.1 port (UDP and TCP). Needs a Tokio runtime.
    pub async fn start() -> Result<TestDns, TestkitError> {
        let (udp, tcp) = bind_pair().await?;
        let addr = udp.local_addr().map_err(|source| TestkitError::Io {
            what: "reading the DNS server address".into(),
            source,
        })?;
        let zone = Arc::new(Mutex::new(Zone::default()));
        let questions = Arc::new(AtomicUsize::new(0));
        let tasks = vec![
            tokio::spawn(serve_udp(udp, zone.clone(), questions.clone())),
            tokio::spawn(serve_tcp(tcp, zone.clone(), questions.clone())),
        ];
        Ok(TestDns {
            addr,
            zone,
            questions,
            tasks,
        })
    }

    /// Where to send questions (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Adds an SRV record for `name` (e.g. `_choria-provisioner._tcp.example.net`).
    pub fn add_srv(&self, name: &str, priority: u16, weight: u16, port: u16, target: &str) {
        self.zone()
            .srv
            .entry(key(name))
            .or_default()
            .push(SrvAnswer {
                priority,
                weight,
                port,
                target: target.to_string(),
            });
    }

    /// Adds an A record for `name`.
    pub fn add_a(&self, name: &str, address: Ipv4Addr) {
        self.zone().a.entry(key(name)).or_default().push(address);
    }

    /// Makes `name` exist with no records of any type (answers are empty NOERROR).
    pub fn add_empty(&self, name: &str) {
        let mut zone = self.zone();
        zone.srv.entry(key(name)).or_default();
    }

    /// Removes every record of `name`, so it answers NXDOMAIN again.
    pub fn remove(&self, name: &str) {
        let mut zone = self.zone();
        zone.srv.remove(&key(name));
        zone.a.remove(&key(name));
    }

    /// How many questions have been answered so far.
    pub fn questions(&self) -> usize {
        self.questions.load(Ordering::SeqCst)
    }

    fn zone(&self) -> MutexGuard<'_, Zone> {
        lock(&self.zone)
    }
}

impl Drop for TestDns {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn lock(zone: &Mutex<Zone>) -> MutexGuard<'_, Zone> {
    // Plain map updates only; a poisoned zone is still consistent.
    zone.lock().unwrap_or_else(PoisonError::into_inner)
}

fn key(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// Binds UDP on a free port and TCP on the same port, trying a few ports.
async fn bind_pair() -> Result<(UdpSocket, TcpListener), TestkitError> {
    let mut last = None;
    for _ in 0..20 {
        let udp = UdpSocket::bind("127.0.0.1:0")
            .await
            .map_err(|source| TestkitError::Io {
                what: "binding a UDP socket on 127.0.0.1".into(),
                source,
            })?;
        let addr = udp.local_addr().map_err(|source| TestkitError::Io {
            what: "reading a bound UDP port".into(),
            source,
        })?;
        match TcpListener::bind(addr).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(err) => last = Some(err),
        }
    }
    Err(TestkitError::Io {
        what: "binding UDP and TCP on one 127.0.0.1 port".into(),
        source: last.unwrap_or_else(|| std::io::Error::other("no attempt made")),
    })
}

async fn serve_udp(socket: UdpSocket, zone: Arc<Mutex<Zone>>, questions: Arc<AtomicUsize>) {
    let mut buffer = vec![0u8; 4096];
    loop {
        let Ok((len, peer)) = socket.recv_from(&mut buffer).await else {
            continue;
        };
        let Some(reply) = answer(&lock(&zone), &buffer[..len]) else {
            continue;
        };
        questions.fetch_add(1, Ordering::SeqCst);
        let _ = socket.send_to(&reply, peer).await;
    }
}

async fn serve_tcp(listener: TcpListener, zone: Arc<Mutex<Zone>>, questions: Arc<AtomicUsize>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(serve_tcp_connection(
            stream,
            zone.clone(),
            questions.clone(),
        ));
    }
}

async fn serve_tcp_connection(
    mut stream: TcpStream,
    zone: Arc<Mutex<Zone>>,
    questions: Arc<AtomicUsize>,
) {
    loop {
        let Ok(len) = stream.read_u16().await else {
            return;
        };
        let mut request = vec![0u8; usize::from(len)];
        if stream.read_exact(&mut request).await.is_err() {
            return;
        }
        let reply = answer(&lock(&zone), &request);
        let Some(reply) = reply else { return };
        let Ok(reply_len) = u16::try_from(reply.len()) else {
            return;
        };
        questions.fetch_add(1, Ordering::SeqCst);
        if stream.write_u16(reply_len).await.is_err() || stream.write_all(&reply).await.is_err() {
            return;
        }
    }
}

/// The encoded answer to an encoded question, or `None` for undecodable input.
fn answer(zone: &Zone, request: &[u8]) -> Option<Vec<u8>> {
    let request = Message::from_vec(request).ok()?;
    let mut response = Message::response(request.metadata.id, request.metadata.op_code);
    response.metadata = Metadata::response_from_request(&request.metadata);
    response.metadata.authoritative = true;
    if request.edns.is_some() {
        response.set_edns(Edns::new());
    }
    let Some(query) = request.queries.first() else {
        response.metadata.response_code = ResponseCode::FormErr;
        return response.to_vec().ok();
    };
    response.add_query(query.clone());
    let name = key(&query.name().to_ascii());
    let known = zone.srv.contains_key(&name) || zone.a.contains_key(&name);
    if !known {
        response.metadata.response_code = ResponseCode::NXDomain;
        return response.to_vec().ok();
    }
    let owner = query.name().clone();
    let records: Vec<Record> = match query.query_type() {
        RecordType::SRV => zone
            .srv
            .get(&name)
            .into_iter()
            .flatten()
            .filter_map(|srv| {
                let target = Name::from_str(&format!("{}.", key(&srv.target))).ok()?;
                Some(Record::from_rdata(
                    owner.clone(),
                    0,
                    RData::SRV(SRV::new(srv.priority, srv.weight, srv.port, target)),
                ))
            })
            .collect(),
        RecordType::A => zone
            .a
            .get(&name)
            .into_iter()
            .flatten()
            .map(|ip| Record::from_rdata(owner.clone(), 0, RData::A(A(*ip))))
            .collect(),
        _ => Vec::new(),
    };
    response.add_answers(records);
    response.to_vec().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(zone: &Zone, name: &str, kind: RecordType) -> Message {
        let mut question = Message::query();
        question.add_query(hickory_resolver::proto::op::Query::query(
            Name::from_str(name).expect("valid test input"),
            kind,
        ));
        let reply = answer(zone, &question.to_vec().expect("valid test input")).expect("an answer");
        Message::from_vec(&reply).expect("valid test input")
    }

    #[test]
    fn answers_srv_a_nodata_and_nxdomain() {
        let mut zone = Zone::default();
        zone.srv.insert(
            "_x._tcp.example.net".into(),
            vec![SrvAnswer {
                priority: 1,
                weight: 2,
                port: 4222,
                target: "b1.example.net".into(),
            }],
        );
        zone.a
            .insert("b1.example.net".into(), vec![Ipv4Addr::LOCALHOST]);

        let srv = ask(&zone, "_X._tcp.example.net.", RecordType::SRV);
        assert_eq!(srv.metadata.response_code, ResponseCode::NoError);
        assert_eq!(srv.answers.len(), 1);
        match &srv.answers[0].data {
            RData::SRV(record) => {
                assert_eq!((record.priority, record.weight, record.port), (1, 2, 4222));
                assert_eq!(record.target.to_string(), "b1.example.net.");
            }
            other => panic!("not SRV: {other:?}"),
        }
        let a = ask(&zone, "b1.example.net.", RecordType::A);
        assert_eq!(a.answers.len(), 1);
        let nodata = ask(&zone, "b1.example.net.", RecordType::SRV);
        assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
        assert!(nodata.answers.is_empty());
        let missing = ask(&zone, "nothing.example.net.", RecordType::SRV);
        assert_eq!(missing.metadata.response_code, ResponseCode::NXDomain);
    }

    #[test]
    fn garbage_gets_no_answer() {
        assert!(answer(&Zone::default(), b"\x01\x02").is_none());
    }
}
