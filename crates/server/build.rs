//! Generates the server side of etcd's Lock and Election services, which etcd-client's
//! `build-server` feature compiles but does not export (docs/design/WATCH_LEASE.md 2.4).
//! The messages they share with the KV API are etcd-client's own generated types
//! (`extern_path`), so a header or key-value built for one service is the same Rust type in
//! all of them.

use std::io;

const PROTOS: [&str; 2] = [
    "proto/v3lockpb/v3lock.proto",
    "proto/v3electionpb/v3election.proto",
];

fn main() -> io::Result<()> {
    // Every file under proto/, the shared stubs included, decides the output.
    println!("cargo:rerun-if-changed=proto");
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .extern_path(
            ".etcdserverpb.ResponseHeader",
            "::etcd_client::proto::PbResponseHeader",
        )
        .extern_path(".mvccpb.KeyValue", "::etcd_client::proto::PbKeyValue")
        .compile_protos(&PROTOS, &["proto"])
}
