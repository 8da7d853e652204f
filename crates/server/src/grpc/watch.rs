//! etcd's Watch service: one bidirectional stream per call, many watchers on it. The
//! watchers themselves live in the replica (`synod_replica::watch`), so the simulator runs
//! them too; this file carries requests in and responses out.
//!
//! Per stream, one task: it converts the client's requests and hands them to the core, and
//! writes the core's responses to the client, one at a time (the channel to gRPC holds one),
//! telling the core how many were written so the replica's per-stream bound moves on. A
//! client that does not read its responses thus holds at most the replica's bound; one that
//! keeps sending requests without reading their answers overflows [`RESPONSES_QUEUED_MAX`]
//! and has its stream closed.

use super::convert::{self, HeaderInfo};
use crate::error::ServerError;
use crate::replica::ReplicaHandle;
use crate::status::Shared;
use etcd_client::proto::{
    PbEvent, PbWatchRequest, PbWatchRequestUnion, PbWatchResponse, PbWatchService,
};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use synod_kv::{EventKind, KeyRange};
use synod_replica::watch::{
    StreamId, WatchCreate, WatchEvent, WatchRequest, WatchResponse, WATCH_STREAM_RESPONSES_MAX,
};
use tokio::sync::mpsc;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

/// Responses the core may queue for one stream's task. The replica holds a stream to
/// [`WATCH_STREAM_RESPONSES_MAX`] event responses; the rest of this room is for answers
/// to the client's own requests. Overflowing it means the client sends requests and reads
/// no answers: its stream is closed.
pub(crate) const RESPONSES_QUEUED_MAX: usize = 4 * WATCH_STREAM_RESPONSES_MAX;

/// Responses written before the task reports them to the core (sooner when it has nothing
/// left to write), so reports cost little on a busy stream.
const DRAINED_REPORT_EVERY: usize = 16;

/// etcd's extra room over `--max-request-bytes` before a response is split into fragments.
const FRAGMENT_SLACK_BYTES: usize = 512 * 1024;

/// How many election timeouts a `require leader` stream survives without a leader (etcd's
/// `maxNoLeaderCnt`).
const NO_LEADER_CHECKS_MAX: u32 = 3;

#[derive(Debug, Clone)]
pub struct WatchService {
    pub replica: ReplicaHandle,
    pub shared: Arc<Shared>,
    /// Responses with several events larger than this plus [`FRAGMENT_SLACK_BYTES`] are
    /// split when the watcher asked for fragments.
    pub request_bytes_max: usize,
    /// How often a `require leader` stream checks that the member has a leader.
    pub leader_check_interval: Duration,
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<PbWatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl PbWatchService for WatchService {
    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<Streaming<PbWatchRequest>>,
    ) -> Result<Response<WatchStream>, Status> {
        let require_leader = request
            .metadata()
            .get("hasleader")
            .is_some_and(|v| v.as_bytes() == b"true");
        if require_leader && self.shared.status().leader.is_none() {
            return Err(ServerError::Replica(synod_replica::ReplicaError::NoLeader).into());
        }
        let incoming = request.into_inner();
        let (responses_tx, responses) = mpsc::channel(RESPONSES_QUEUED_MAX);
        let stream = self.replica.watch_open(responses_tx).await?;
        let (out, out_rx) = mpsc::channel(1);
        let task = StreamTask {
            stream,
            replica: self.replica.clone(),
            shared: self.shared.clone(),
            fragment_bytes: self.request_bytes_max + FRAGMENT_SLACK_BYTES,
            out,
            leader_check: require_leader.then_some(self.leader_check_interval),
        };
        tokio::spawn(task.run(incoming, responses));
        Ok(Response::new(Box::pin(ReceiverStream::new(out_rx))))
    }
}

struct StreamTask {
    stream: StreamId,
    replica: ReplicaHandle,
    shared: Arc<Shared>,
    fragment_bytes: usize,
    out: mpsc::Sender<Result<PbWatchResponse, Status>>,
    /// `Some(interval)`: the client asked that the stream end when the member has no leader.
    leader_check: Option<Duration>,
}

impl StreamTask {
    async fn run(
        self,
        mut incoming: Streaming<PbWatchRequest>,
        mut responses: mpsc::Receiver<WatchResponse>,
    ) {
        let mut reading = true;
        let mut written = 0usize;
        let mut leaderless = 0u32;
        let mut leader_check =
            tokio::time::interval(self.leader_check.unwrap_or(Duration::from_secs(3600)));
        leader_check.tick().await;
        let end: Option<Status> = loop {
            tokio::select! {
                request = incoming.message(), if reading => match request {
                    Ok(Some(request)) => {
                        if let Some(request) = watch_request(request) {
                            if self.replica.watch_request(self.stream, request).await.is_err() {
                                break Some(Status::unavailable("etcdserver: server stopped"));
                            }
                        }
                    }
                    // The client closed its side: etcd goes on sending events.
                    Ok(None) => reading = false,
                    // A request that could not be read (refused by the gate, undecodable):
                    // the stream ends with that status, as grpc-go's would.
                    Err(status) => break Some(status),
                },
                response = responses.recv() => {
                    let Some(response) = response else {
                        break Some(Status::resource_exhausted(
                            "synod: watch stream closed: its client sends requests but does \
                             not read the responses",
                        ));
                    };
                    if !self.write(response).await {
                        break None;
                    }
                    written += 1;
                    if written >= DRAINED_REPORT_EVERY || responses.is_empty() {
                        self.replica.watch_drained(self.stream, written).await;
                        written = 0;
                    }
                }
                _ = leader_check.tick(), if self.leader_check.is_some() => {
                    leaderless = if self.shared.status().leader.is_none() { leaderless + 1 } else { 0 };
                    if leaderless >= NO_LEADER_CHECKS_MAX {
                        break Some(ServerError::Replica(synod_replica::ReplicaError::NoLeader).into());
                    }
                }
                _ = self.out.closed() => break None,
            }
        };
        if let Some(status) = end {
            let _ = self.out.send(Err(status)).await;
        }
        self.replica.watch_close(self.stream).await;
    }

    /// Writes one response (split into fragments if the watcher allows and it is large);
    /// false when the client is gone.
    async fn write(&self, response: WatchResponse) -> bool {
        let header = HeaderInfo {
            cluster_id: self.shared.cluster_id,
            member_id: self.shared.member_id,
            term: self.shared.status().term,
        };
        for piece in fragments(response, self.fragment_bytes) {
            if self.out.send(Ok(to_pb(piece, &header))).await.is_err() {
                return false;
            }
        }
        true
    }
}

/// The client's request as the replica takes it; `None` for an empty request (etcd
/// ignores those).
fn watch_request(request: PbWatchRequest) -> Option<WatchRequest> {
    Some(match request.request_union? {
        PbWatchRequestUnion::CreateRequest(c) => {
            // etcd's filter values: NOPUT = 0, NODELETE = 1.
            let filter_put = c.filters.contains(&0);
            let filter_delete = c.filters.contains(&1);
            let mut range_end = bytes::Bytes::from(c.range_end);
            if range_end.len() == 1 && range_end[0] == 0 {
                range_end = bytes::Bytes::from_static(b"\0");
            }
            WatchRequest::Create(WatchCreate {
                range: KeyRange::new(bytes::Bytes::from(c.key), range_end),
                start_revision: c.start_revision,
                progress_notify: c.progress_notify,
                filter_put,
                filter_delete,
                prev_kv: c.prev_kv,
                watch_id: c.watch_id,
                fragment: c.fragment,
            })
        }
        PbWatchRequestUnion::CancelRequest(c) => WatchRequest::Cancel {
            watch_id: c.watch_id,
        },
        PbWatchRequestUnion::ProgressRequest(_) => WatchRequest::Progress,
    })
}

/// `response`, split if its watcher allows fragments, it has two or more events and it is
/// larger than `limit`: every piece but the last is marked `fragment`, all carry the same
/// header (etcd's rule).
fn fragments(response: WatchResponse, limit: usize) -> Vec<WatchResponse> {
    if !response.fragment || response.events.len() < 2 || response.size() < limit {
        return vec![WatchResponse {
            fragment: false,
            ..response
        }];
    }
    let mut pieces = Vec::new();
    let mut current = WatchResponse {
        events: Vec::new(),
        fragment: true,
        ..response.clone()
    };
    for event in response.events {
        let event_size = WatchResponse {
            events: vec![event.clone()],
            ..WatchResponse::default()
        }
        .size();
        if !current.events.is_empty() && current.size() + event_size > limit {
            let next = WatchResponse {
                events: Vec::new(),
                ..current.clone()
            };
            pieces.push(std::mem::replace(&mut current, next));
        }
        current.events.push(event);
    }
    current.fragment = false;
    pieces.push(current);
    pieces
}

fn to_pb(r: WatchResponse, header: &HeaderInfo) -> PbWatchResponse {
    PbWatchResponse {
        header: header.header(r.revision),
        watch_id: r.watch_id,
        created: r.created,
        canceled: r.canceled,
        compact_revision: r.compact_revision,
        cancel_reason: r.cancel_reason,
        fragment: r.fragment,
        events: r.events.into_iter().map(event).collect(),
    }
}

fn event(e: WatchEvent) -> PbEvent {
    PbEvent {
        // etcd's event types: PUT = 0, DELETE = 1.
        r#type: match e.kind {
            EventKind::Put => 0,
            EventKind::Delete => 1,
        },
        kv: Some(convert::key_value(e.kv)),
        prev_kv: e.prev_kv.map(convert::key_value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use synod_kv::KeyValue;

    fn put(key: &str, value_len: usize) -> WatchEvent {
        WatchEvent {
            kind: EventKind::Put,
            kv: KeyValue {
                key: Bytes::from(key.to_owned()),
                value: Bytes::from(vec![b'x'; value_len]),
                ..KeyValue::default()
            },
            prev_kv: None,
        }
    }

    #[test]
    fn large_responses_split_only_when_allowed() {
        let response = WatchResponse {
            watch_id: 3,
            revision: 9,
            fragment: true,
            events: (0..10).map(|i| put(&format!("k{i}"), 1000)).collect(),
            ..WatchResponse::default()
        };
        let pieces = fragments(response.clone(), 3000);
        assert!(pieces.len() > 1);
        assert!(pieces[..pieces.len() - 1].iter().all(|p| p.fragment));
        assert!(!pieces.last().unwrap().fragment);
        assert!(pieces.iter().all(|p| p.revision == 9 && p.watch_id == 3));
        let events: usize = pieces.iter().map(|p| p.events.len()).sum();
        assert_eq!(events, 10);
        let whole = fragments(
            WatchResponse {
                fragment: false,
                ..response
            },
            3000,
        );
        assert_eq!(whole.len(), 1);
        assert!(!whole[0].fragment);
    }

    #[test]
    fn a_single_event_is_never_split() {
        let response = WatchResponse {
            fragment: true,
            events: vec![put("k", 10_000)],
            ..WatchResponse::default()
        };
        assert_eq!(fragments(response, 100).len(), 1);
    }
}
