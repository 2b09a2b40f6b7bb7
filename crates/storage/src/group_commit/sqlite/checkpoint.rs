//! Checkpoints of the group commit's writes, off its way.
//!
//! Left to itself, the connection whose commit pushes SQLite's write-ahead log past 1,000
//! pages copies the log into the database file right then, with two `fsync`s. On the group
//! commit's connection that happened dozens of times a second under load, and each time every
//! request on the node waited for the disk. So that connection does not checkpoint: a thread
//! of its own does, on a connection of its own, at most every `PACE`, after a commit it heard
//! of. A passive checkpoint takes no lock a writer needs, so writers go on appending while it
//! copies and syncs. Measured on `POST /v1/verify` (SQLite, 2 cores): about a sixth more
//! requests a second and a lower p99. Checkpointing after every commit instead measured worse
//! than SQLite's own way: it copied the same few hot pages again and again.
//!
//! The log starts over (its next frame written at the front of the file, which then grows no
//! more) only when a writer finds every frame copied and no reader in the log. Under steady
//! writes the passive checkpoints never catch up with the writer, so once the log holds
//! `restart_frames` the thread takes the writer turn, which holds this process's writers back
//! while it copies what the last pass left, and checkpoints in `RESTART` mode.

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::StorageError;

/// Log frames (pages) past which the log is started over: 16 MiB of 4 KiB pages.
pub(super) const RESTART_FRAMES: i64 = 4096;

/// The least time between two checkpoints: what they copy of the pages written again and again
/// (the ledger's row, the newest leaves of each index) is copied once per pass.
const PACE: Duration = Duration::from_millis(50);

/// How long a restart waits for readers to leave the log while it holds the writer turn; a
/// reader that takes longer only puts the restart off to the next pass.
const READERS_WAIT: Duration = Duration::from_millis(100);

/// Tells the checkpointer that a transaction committed. Cheap: it never waits.
pub(super) struct Committed(SyncSender<()>);

impl Committed {
    /// Says so; false when the checkpointer is gone (its thread ended), and the caller must
    /// checkpoint for itself.
    pub(super) fn tell(&self) -> bool {
        !matches!(self.0.try_send(()), Err(TrySendError::Disconnected(())))
    }
}

/// What a pass did, for whoever watches (the tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pass {
    Passive,
    Restarted,
}

/// Starts the checkpointer of `file`, whose writers take the `writer` turn: a thread, which
/// ends when the returned [`Committed`] goes.
pub(super) fn start(
    file: &Path,
    writer: Arc<tokio::sync::Mutex<()>>,
    restart_frames: i64,
) -> Result<Committed, StorageError> {
    start_watched(file, writer, restart_frames, None)
}

/// [`start`], telling `passes` of each pass it made.
fn start_watched(
    file: &Path,
    writer: Arc<tokio::sync::Mutex<()>>,
    restart_frames: i64,
    passes: Option<std::sync::mpsc::Sender<Pass>>,
) -> Result<Committed, StorageError> {
    let connection = Connection::open_with_flags(
        file,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    connection.busy_timeout(READERS_WAIT)?;
    // One commit heard of is enough: a pass copies whatever committed before it.
    let (committed, heard) = sync_channel(1);
    std::thread::Builder::new()
        .name("mailroom-checkpoint".to_owned())
        .spawn(move || run(&connection, &writer, &heard, restart_frames, passes))
        .map_err(|_| StorageError::Internal("the checkpoint thread did not start"))?;
    Ok(Committed(committed))
}

fn run(
    connection: &Connection,
    writer: &tokio::sync::Mutex<()>,
    heard: &Receiver<()>,
    restart_frames: i64,
    passes: Option<std::sync::mpsc::Sender<Pass>>,
) {
    while heard.recv().is_ok() {
        std::thread::sleep(PACE);
        let passed = checkpoint(connection, "PASSIVE").and_then(|(_, frames)| {
            if frames < restart_frames {
                return Ok(Pass::Passive);
            }
            // This thread is no runtime worker: waiting here holds up no task.
            let _turn = writer.blocking_lock();
            let (busy, _) = checkpoint(connection, "RESTART")?;
            Ok(if busy { Pass::Passive } else { Pass::Restarted })
        });
        match passed {
            Ok(pass) => {
                if let Some(passes) = &passes {
                    let _ = passes.send(pass);
                }
            }
            Err(error) => {
                tracing::warn!(%error, "a checkpoint of the database failed; the next commit tries again");
            }
        }
    }
}

/// Runs a checkpoint in `mode`; answers whether it could not finish (a reader or writer in
/// the way) and how many frames the log holds.
fn checkpoint(connection: &Connection, mode: &str) -> Result<(bool, i64), StorageError> {
    let (busy, frames, _copied): (i64, i64, i64) =
        connection.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })?;
    Ok((busy != 0, frames))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes that never checkpoint themselves are checkpointed by the thread, and the log
    /// starts over once it holds `restart_frames`, instead of growing with every write. Told
    /// by the thread's own report of its passes, not by how much it got done in some time.
    #[test]
    fn the_thread_checkpoints_and_starts_the_log_over() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("db.sqlite");
        let writes = Connection::open(&file).unwrap();
        writes
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0; \
                 CREATE TABLE t (v BLOB);",
            )
            .unwrap();
        let writer = Arc::new(tokio::sync::Mutex::new(()));
        let (passes, passed) = std::sync::mpsc::channel();
        let committed = start_watched(&file, Arc::clone(&writer), 64, Some(passes)).unwrap();
        let write_pages = |pages: usize| {
            for _ in 0..pages {
                let turn = writer.blocking_lock();
                writes
                    .execute("INSERT INTO t VALUES (zeroblob(4000))", [])
                    .unwrap();
                drop(turn);
            }
        };
        let log_bytes = || {
            std::fs::metadata(dir.path().join("db.sqlite-wal"))
                .unwrap()
                .len()
        };
        // Twice the restart mark, then one commit told: the pass that follows starts the log
        // over (the test holds no lock while it waits).
        write_pages(128);
        assert!(committed.tell());
        let grown = log_bytes();
        loop {
            let pass = passed
                .recv_timeout(Duration::from_secs(600))
                .expect("the checkpointer made a pass");
            if pass == Pass::Restarted {
                break;
            }
            assert!(committed.tell());
        }
        // The next writes go at the front of the log: its file grows no more.
        write_pages(64);
        assert_eq!(log_bytes(), grown, "the log went on growing");
    }
}
