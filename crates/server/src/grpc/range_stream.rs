//! KV.RangeStream (etcd 3.7): a Range answered in chunks, so a very large range never has
//! to be one message. Merging the chunks gives what Range would have answered: every chunk
//! carries the next keys, the last one also the header, `more` and `count`.
//!
//! The first chunk is read as the request asks (linearizable unless `serializable`) and
//! pins the revision; the rest are read at that revision from this member's store, each
//! continuing after the last key sent. Chunks start at [`FIRST_CHUNK_KEYS`] keys and double
//! while they stay under a quarter of `--max-request-bytes`. As in etcd, only key order is
//! served (sort orders other than ascending by key, and revision filters, are refused).

use super::convert::{self, HeaderInfo};
use crate::error::ServerError;
use crate::replica::ReplicaHandle;
use bytes::Bytes;
use etcd_client::proto::{PbRangeRequest, PbRangeResponse, PbRangeStreamResponse};
use synod_kv as kv;
use tokio::sync::mpsc;
use tonic::Status;

/// Keys in the first chunk.
const FIRST_CHUNK_KEYS: i64 = 10;

/// Keys in any chunk, at most.
const CHUNK_KEYS_MAX: i64 = 10_000;

/// Chunks queued for the client at once: the reader waits while the client is slow.
pub(crate) const CHUNKS_QUEUED_MAX: usize = 2;

pub(crate) type Chunk = Result<PbRangeStreamResponse, Status>;

/// Checks the request and starts streaming it; the chunks arrive on the returned channel.
pub(crate) fn start(
    replica: ReplicaHandle,
    header: HeaderInfo,
    request: PbRangeRequest,
    request_bytes_max: usize,
) -> Result<mpsc::Receiver<Chunk>, Status> {
    let linearizable = !request.serializable;
    let range = convert::range_request(request)?;
    let key_order = matches!(range.sort_target, kv::SortTarget::Key)
        && !matches!(range.sort_order, kv::SortOrder::Descend);
    let filtered = range.min_mod_revision != 0
        || range.max_mod_revision != 0
        || range.min_create_revision != 0
        || range.max_create_revision != 0;
    if !key_order || filtered {
        return Err(Status::unimplemented(
            "synod: RangeStream serves key order only, without revision filters (as etcd)",
        ));
    }
    let (tx, rx) = mpsc::channel(CHUNKS_QUEUED_MAX);
    let stream = RangeStream {
        replica,
        header,
        range,
        linearizable,
        chunk_bytes_target: (request_bytes_max / 4).max(1),
        tx,
    };
    tokio::spawn(stream.run());
    Ok(rx)
}

struct RangeStream {
    replica: ReplicaHandle,
    header: HeaderInfo,
    range: kv::RangeRequest,
    linearizable: bool,
    chunk_bytes_target: usize,
    tx: mpsc::Sender<Chunk>,
}

impl RangeStream {
    async fn run(self) {
        if let Err(status) = self.stream().await {
            let _ = self.tx.send(Err(status)).await;
        }
    }

    async fn stream(&self) -> Result<(), Status> {
        let limit = self.range.limit.max(0);
        let mut chunk_keys = FIRST_CHUNK_KEYS;
        let mut next = self.range.clone();
        let mut sent: i64 = 0;
        let mut pinned: Option<(i64, i64)> = None; // (revision, count)
        loop {
            let want = match limit {
                0 => chunk_keys,
                l => chunk_keys.min(l - sent),
            };
            next.limit = want;
            let linearizable = pinned.is_none() && self.linearizable;
            let r = self.read(&next, linearizable).await?;
            let (revision, count) = *pinned.get_or_insert((r.header.revision, r.count));
            next.revision = revision;
            sent += r.kvs.len() as i64;
            let bytes: usize = r.kvs.iter().map(|kv| kv.key.len() + kv.value.len()).sum();
            let last_key = r.kvs.last().map(|kv| kv.key.clone());
            let done = !r.more || self.range.count_only || (limit > 0 && sent >= limit);
            let more = r.more;
            let mut chunk = PbRangeResponse {
                kvs: convert::range_response(r, self.header_info()).kvs,
                ..PbRangeResponse::default()
            };
            if done {
                chunk.header = self.header_info().header(revision);
                chunk.count = count;
                // `more` as Range would say: keys beyond the request's own limit.
                chunk.more = limit > 0 && more;
            }
            let response = PbRangeStreamResponse {
                range_response: Some(chunk),
            };
            if self.tx.send(Ok(response)).await.is_err() {
                return Ok(()); // the client went away
            }
            if done {
                return Ok(());
            }
            let Some(last_key) = last_key else {
                return Ok(());
            };
            next.key = after(&last_key);
            if bytes < self.chunk_bytes_target {
                chunk_keys = (chunk_keys * 2).min(CHUNK_KEYS_MAX);
            }
        }
    }

    async fn read(
        &self,
        request: &kv::RangeRequest,
        linearizable: bool,
    ) -> Result<kv::RangeResponse, Status> {
        match self
            .replica
            .read(kv::ReadRequest::range(request.clone()), linearizable)
            .await
            .map_err(Status::from)?
        {
            kv::Response::Range(r) => Ok(r),
            _ => Err(ServerError::Replica(synod_replica::ReplicaError::Stopped).into()),
        }
    }

    fn header_info(&self) -> HeaderInfo {
        HeaderInfo {
            cluster_id: self.header.cluster_id,
            member_id: self.header.member_id,
            term: self.header.term,
        }
    }
}

/// The smallest key after `key`.
fn after(key: &[u8]) -> Bytes {
    let mut next = key.to_vec();
    next.push(0);
    Bytes::from(next)
}
