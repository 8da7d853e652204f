//! What a run leaves behind when it finds something, next to the members' logs: the whole
//! client history with real times and members, and the faults, so that a violation can be
//! read against the logs.

use crate::history::OpMeta;
use crate::nemesis::FaultRecord;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;
use synod_check::HistoryOp;

/// Writes `history.txt` and `faults.txt` into `dir`. Real times are milliseconds since
/// `start`, the same origin as the fault times.
pub fn write(
    dir: &Path,
    start: Instant,
    ops: &[(HistoryOp, OpMeta)],
    faults: &[FaultRecord],
    violations: &[String],
) -> std::io::Result<()> {
    let ms = |t: Instant| t.saturating_duration_since(start).as_secs_f64() * 1000.0;
    let mut h = String::from(
        "# h-invoke h-complete client member op -> result | sent-ms answered-ms (since run start)\n",
    );
    for (op, meta) in ops {
        let _ = writeln!(
            h,
            "h{} {} c{} m{} {:?} -> {} | {:.1} {}",
            op.invoke,
            op.complete
                .as_ref()
                .map_or("h?".into(), |(t, _)| format!("h{t}")),
            op.client,
            meta.node + 1,
            op.op,
            match (op.discarded, &op.complete) {
                (true, _) => "FAILED (no effect)".to_string(),
                (false, None) => "UNKNOWN".to_string(),
                (false, Some((_, r))) => format!("{r:?}"),
            },
            ms(meta.sent),
            meta.answered
                .map_or("-".into(), |t| format!("{:.1}", ms(t))),
        );
    }
    std::fs::write(dir.join("history.txt"), h)?;
    let mut f = String::new();
    for v in violations {
        let _ = writeln!(f, "VIOLATION: {v}");
    }
    for r in faults {
        let _ = writeln!(
            f,
            "{:.1}ms +{:.1}ms {}: {}",
            r.at.as_secs_f64() * 1000.0,
            r.held.as_secs_f64() * 1000.0,
            r.kind,
            r.description
        );
    }
    std::fs::write(dir.join("faults.txt"), f)
}
