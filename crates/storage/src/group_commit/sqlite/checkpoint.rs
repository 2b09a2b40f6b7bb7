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

/// Starts the checkpointer of `file`, whose writers take the `writer` turn: a thread, which
/// ends when the returned [`Committed`] goes.
pub(super) fn start(
    file: &Path,
    writer: Arc<tokio::sync::Mutex<()>>,
    restart_frames: i64,
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
        .spawn(move || run(&connection, &writer, &heard, restart_frames))
        .map_err(|_| StorageError::Internal("the checkpoint thread did not start"))?;
    Ok(Committed(committed))
}

fn run(
    connection: &Connection,
    writer: &tokio::sync::Mutex<()>,
    heard: &Receiver<()>,
    restart_frames: i64,
) {
    while heard.recv().is_ok() {
        std::thread::sleep(PACE);
        let passed = checkpoint(connection, "PASSIVE").and_then(|frames| {
            if frames < restart_frames {
                return Ok(frames);
            }
            // This thread is no runtime worker: waiting here holds up no task.
            let _turn = writer.blocking_lock();
            checkpoint(connection, "RESTART")
        });
        if let Err(error) = passed {
            tracing::warn!(%error, "a checkpoint of the database failed; the next commit tries again");
        }
    }
}

/// Runs a checkpoint in `mode`; answers how many frames the log holds.
fn checkpoint(connection: &Connection, mode: &str) -> Result<i64, StorageError> {
    let (_busy, frames, _copied): (i64, i64, i64) =
        connection.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })?;
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes that never checkpoint themselves are checkpointed by the thread, and the log
    /// starts over once it holds `restart_frames`, instead of growing with every write.
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
        let committed = start(&file, Arc::clone(&writer), 64).unwrap();
        // Back to back, a page each, as under load: the passive checkpoints never catch up.
        let (mut written, since) = (0, std::time::Instant::now());
        while since.elapsed() < Duration::from_secs(2) {
            let turn = writer.blocking_lock();
            writes
                .execute("INSERT INTO t VALUES (zeroblob(4000))", [])
                .unwrap();
            drop(turn);
            assert!(committed.tell());
            written += 4096;
        }
        let log = std::fs::metadata(dir.path().join("db.sqlite-wal"))
            .unwrap()
            .len();
        assert!(
            log < written / 4,
            "the log grew to {log} bytes of {written} written"
        );
    }
}
