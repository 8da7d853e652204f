//! etcd's Election service (`v3electionpb.Election`), over the election recipes
//! (`synod_replica::recipes`) run by the lock service's [`Shell`].
//!
//! Observe is a server stream: one task per call reads the leader and follows its key
//! through a watch of this member's own, sending each answer as the client takes it (so a
//! client that does not read holds one answer here, and the watch's own bound behind it).
//! It ends when the client goes away, or without an error, as etcd's does, when a read or
//! the watch fails.

use super::convert;
use super::lock::{unknown, KeyWatch, Shell};
use super::proto::v3electionpb::election_server::Election as ElectionApi;
use super::proto::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderKey as PbLeaderKey, LeaderRequest, LeaderResponse,
    ProclaimRequest, ProclaimResponse, ResignRequest, ResignResponse,
};
use bytes::Bytes;
use std::pin::Pin;
use synod_kv::{KeyValue, RangeResponse, Response as KvResponse, ResponseHeader};
use synod_replica::recipes::{
    leader_read, Campaign, Current, LeaderKey, Observe, ObserveStep, Observed, Proclaim, Progress,
    RecipeError, Resign,
};
use tokio::sync::mpsc;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::tokio_stream::Stream;
use tonic::{Request, Response, Status};

/// etcd's Election service.
#[derive(Debug, Clone)]
pub struct ElectionService {
    pub(super) shell: Shell,
}

fn leader_key(pb: PbLeaderKey) -> LeaderKey {
    LeaderKey {
        name: Bytes::from(pb.name),
        key: Bytes::from(pb.key),
        rev: pb.rev,
        lease: pb.lease,
    }
}

fn pb_leader_key(leader: LeaderKey) -> PbLeaderKey {
    PbLeaderKey {
        name: leader.name.to_vec(),
        key: leader.key.to_vec(),
        rev: leader.rev,
        lease: leader.lease,
    }
}

impl ElectionService {
    /// A LeaderResponse: `kv` as of `revision`.
    fn leader_response(&self, revision: i64, kv: KeyValue) -> LeaderResponse {
        let header = self.shell.header_info();
        let range = RangeResponse {
            header: ResponseHeader { revision },
            kvs: vec![kv],
            more: false,
            count: 1,
        };
        let range = convert::range_response(range, header);
        LeaderResponse {
            header: range.header,
            kv: range.kvs.into_iter().next(),
        }
    }
}

type ObserveStream = Pin<Box<dyn Stream<Item = Result<LeaderResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ElectionApi for ElectionService {
    async fn campaign(
        &self,
        request: Request<CampaignRequest>,
    ) -> Result<Response<CampaignResponse>, Status> {
        let request = request.into_inner();
        self.shell.check_size(&request)?;
        let value = Bytes::from(request.value);
        let (campaign, step) = Campaign::start(&request.name, request.lease, value);
        let won = self.shell.run(campaign, Progress::Next(step)).await;
        let won = won.map_err(unknown)?;
        Ok(Response::new(CampaignResponse {
            header: self.shell.header(won.revision),
            leader: Some(pb_leader_key(won.leader)),
        }))
    }

    async fn proclaim(
        &self,
        request: Request<ProclaimRequest>,
    ) -> Result<Response<ProclaimResponse>, Status> {
        let request = request.into_inner();
        self.shell.check_size(&request)?;
        let leader = request.leader.map(leader_key);
        let (proclaim, first) = Proclaim::start(leader, Bytes::from(request.value));
        let revision = self.shell.run(proclaim, first).await.map_err(unknown)?;
        Ok(Response::new(ProclaimResponse {
            header: self.shell.header(revision),
        }))
    }

    async fn leader(
        &self,
        request: Request<LeaderRequest>,
    ) -> Result<Response<LeaderResponse>, Status> {
        let name = request.into_inner().name;
        let read = self.shell.replica.read(leader_read(&name), true).await;
        let current = match read {
            Ok(KvResponse::Range(range)) => Current::from_read(range),
            Ok(_) => Err(RecipeError::Unexpected(
                "a read's reply is not a range response",
            )),
            Err(e) => Err(RecipeError::Request(e.into())),
        };
        let current = current.map_err(unknown)?;
        Ok(Response::new(
            self.leader_response(current.revision, current.kv),
        ))
    }

    type ObserveStream = ObserveStream;

    async fn observe(
        &self,
        request: Request<LeaderRequest>,
    ) -> Result<Response<ObserveStream>, Status> {
        let name = request.into_inner().name;
        // One answer in flight: the task waits for the client to take it.
        let (out, out_rx) = mpsc::channel(1);
        let service = self.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = service.observe_until_ended(&name, &out) => {}
                () = out.closed() => {}
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out_rx))))
    }

    async fn resign(
        &self,
        request: Request<ResignRequest>,
    ) -> Result<Response<ResignResponse>, Status> {
        let request = request.into_inner();
        self.shell.check_size(&request)?;
        let (resign, first) = Resign::start(request.leader.map(leader_key));
        let revision = self.shell.run(resign, first).await.map_err(unknown)?;
        Ok(Response::new(ResignResponse {
            header: self.shell.header(revision),
        }))
    }
}

impl ElectionService {
    /// Runs an Observe until it ends or its client stops taking answers.
    async fn observe_until_ended(
        &self,
        name: &[u8],
        out: &mpsc::Sender<Result<LeaderResponse, Status>>,
    ) {
        let (mut observe, mut step) = Observe::start(name);
        let mut watch: Option<KeyWatch> = None;
        let mut answers: Vec<Observed> = Vec::new();
        loop {
            step = match step {
                ObserveStep::Read(read) => {
                    watch = None;
                    match self.shell.replica.read(read, true).await {
                        Ok(response) => observe.on_read(response, &mut answers),
                        Err(_) => ObserveStep::End,
                    }
                }
                ObserveStep::Watch {
                    range,
                    from_revision,
                } => {
                    // The old watch closes before the new one opens.
                    watch = None;
                    let replica = self.shell.replica.clone();
                    match KeyWatch::open(replica, range, from_revision).await {
                        Ok(opened) => {
                            watch = Some(opened);
                            ObserveStep::Continue
                        }
                        Err(_) => ObserveStep::End,
                    }
                }
                ObserveStep::Continue => match watch.as_mut() {
                    Some(w) => match w.next().await {
                        Ok(response) => observe.on_watch(&response, &mut answers),
                        Err(_) => ObserveStep::End,
                    },
                    None => ObserveStep::End,
                },
                ObserveStep::End => return,
            };
            for answer in answers.drain(..) {
                let response = self.leader_response(answer.revision, answer.kv);
                if out.send(Ok(response)).await.is_err() {
                    return;
                }
            }
        }
    }
}
