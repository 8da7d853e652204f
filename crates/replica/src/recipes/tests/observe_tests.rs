//! Observe, its watches answered from the store's history.

use super::*;

/// An observer and the watch it holds.
struct Observer {
    observe: Observe,
    /// The watch asked for last and the first revision it has not delivered.
    watch: Option<(KeyRange, i64)>,
    seen: Vec<(i64, String)>,
    ended: bool,
}

impl Observer {
    fn start(w: &mut World, name: &str) -> Observer {
        let (observe, step) = Observe::start(name.as_bytes());
        let mut observer = Observer {
            observe,
            watch: None,
            seen: Vec::new(),
            ended: false,
        };
        observer.carry_out(w, step);
        observer
    }

    fn carry_out(&mut self, w: &mut World, mut step: ObserveStep) {
        loop {
            let mut out = Vec::new();
            step = match step {
                ObserveStep::Read(read) => {
                    self.watch = None;
                    let response = Response::Range(w.store.range(&read).unwrap());
                    self.observe.on_read(response, &mut out)
                }
                ObserveStep::Watch {
                    range,
                    from_revision,
                } => {
                    self.watch = Some((range, from_revision));
                    // The created response, with no events.
                    let created = WatchResponse {
                        created: true,
                        revision: w.store.revision(),
                        ..WatchResponse::default()
                    };
                    self.observe.on_watch(&created, &mut out)
                }
                ObserveStep::Continue => return,
                ObserveStep::End => {
                    self.ended = true;
                    return;
                }
            };
            self.record(out);
        }
    }

    fn record(&mut self, out: Vec<Observed>) {
        for o in out {
            let value = String::from_utf8(o.kv.value.to_vec()).unwrap();
            self.seen.push((o.revision, value));
        }
    }

    /// Delivers what the watch has not had yet as one response per revision, as a synced
    /// watcher gets them.
    fn catch_up(&mut self, w: &mut World) {
        while let Some((range, from)) = self.watch.clone() {
            let events = w.events(&range, from);
            let Some(first) = events.first() else {
                return;
            };
            let revision = first.kv.mod_revision;
            let response = WatchResponse {
                revision,
                events: events
                    .iter()
                    .filter(|e| e.kv.mod_revision == revision)
                    .map(|e| WatchEvent {
                        kind: e.kind,
                        kv: e.kv.clone(),
                        prev_kv: None,
                    })
                    .collect(),
                ..WatchResponse::default()
            };
            self.watch = Some((range, revision + 1));
            let mut out = Vec::new();
            let step = self.observe.on_watch(&response, &mut out);
            self.record(out);
            self.carry_out(w, step);
        }
    }

    fn take(&mut self) -> Vec<(i64, String)> {
        std::mem::take(&mut self.seen)
    }
}

fn seen(items: &[(i64, &str)]) -> Vec<(i64, String)> {
    items.iter().map(|(r, v)| (*r, v.to_string())).collect()
}

#[test]
fn observe_follows_the_leader_its_values_and_its_successor() {
    let mut w = World::new();
    let (a, b) = (w.grant(1), w.grant(2));
    let mut observer = Observer::start(&mut w, "e");
    assert!(
        observer.take().is_empty(),
        "no leader yet: nothing until one is put"
    );

    let first = done(w.campaign("e", a, "A").1).unwrap();
    observer.catch_up(&mut w);
    assert_eq!(
        observer.take(),
        seen(&[(2, "A")]),
        "the first put, at its revision"
    );

    let (mut second, run) = w.campaign("e", b, "B");
    w.put("unrelated", "x");
    w.proclaim(Some(first.leader.clone()), "A2").unwrap();
    observer.catch_up(&mut w);
    assert_eq!(
        observer.take(),
        seen(&[(5, "A2")]),
        "only the leader's puts"
    );

    w.resign(Some(first.leader)).unwrap();
    done(w.resume(&mut second, run)).unwrap();
    observer.catch_up(&mut w);
    // After the delete, the read finds the next leader, answered with the read's header.
    assert_eq!(observer.take(), seen(&[(6, "B")]));
    assert!(!observer.ended);
}

#[test]
fn a_leader_present_at_the_start_is_answered_with_the_reads_revision() {
    let mut w = World::new();
    let lease = w.grant(1);
    done(w.campaign("e", lease, "A").1).unwrap();
    w.put("x", "y");
    let mut observer = Observer::start(&mut w, "e");
    assert_eq!(observer.take(), seen(&[(3, "A")]));
}

#[test]
fn deletes_under_the_prefix_do_not_make_a_leader() {
    let mut w = World::new();
    w.put("e/stray", "s");
    w.delete(&Bytes::from_static(b"e/stray"));
    let mut observer = Observer::start(&mut w, "e");
    w.put("e/stray", "s2");
    w.delete(&Bytes::from_static(b"e/stray"));
    observer.catch_up(&mut w);
    // The put was a leader while it lasted; its delete sends the observer back to reading.
    assert_eq!(observer.take(), seen(&[(4, "s2")]));
    assert!(!observer.ended);
}

#[test]
fn a_cancelled_watch_or_failed_read_ends_the_stream() {
    let mut w = World::new();
    let lease = w.grant(1);
    done(w.campaign("e", lease, "A").1).unwrap();
    let mut observer = Observer::start(&mut w, "e");
    let cancel = WatchResponse {
        canceled: true,
        compact_revision: 2,
        ..WatchResponse::default()
    };
    let mut out = Vec::new();
    assert_eq!(
        observer.observe.on_watch(&cancel, &mut out),
        ObserveStep::End
    );
    assert!(out.is_empty());

    let (mut observe, _) = Observe::start(b"e");
    let not_a_range = Response::Compact(synod_kv::CompactionResponse::default());
    assert_eq!(observe.on_read(not_a_range, &mut out), ObserveStep::End);
}
