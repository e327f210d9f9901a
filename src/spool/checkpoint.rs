//! The checkpoint: every record with a lower sequence number has been acknowledged by Kafka.
//! Two slots in different sectors, each with its own checksum, so that a torn write never loses
//! the previous value.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::Path;

use super::sync_dir;

/// Size of the checkpoint file: two slots in different 512-byte sectors, so that a write torn by
/// a crash damages at most the slot being written and the other still holds the previous value.
pub(super) const CHECKPOINT_FILE_LEN: u64 = 1024;
pub(super) const CHECKPOINT_SLOTS: [u64; 2] = [0, 512];

pub(super) fn encode_checkpoint(seq: u64) -> [u8; 12] {
    let mut bytes = [0u8; 12];
    bytes[0..8].copy_from_slice(&seq.to_le_bytes());
    let crc = crc32fast::hash(&bytes[0..8]);
    bytes[8..12].copy_from_slice(&crc.to_le_bytes());
    bytes
}

pub(super) fn decode_checkpoint(bytes: &[u8]) -> Option<u64> {
    let seq = u64::from_le_bytes(bytes.get(0..8)?.try_into().ok()?);
    let crc = u32::from_le_bytes(bytes.get(8..12)?.try_into().ok()?);
    (crc32fast::hash(&bytes[0..8]) == crc).then_some(seq)
}

/// The highest valid slot of the checkpoint file; 0 when there is none.
pub(super) fn read_checkpoint(dir: &Path) -> io::Result<u64> {
    let bytes = match fs::read(dir.join("checkpoint")) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(error) => return Err(error),
    };
    let valid: Vec<u64> = CHECKPOINT_SLOTS
        .iter()
        .filter_map(|&offset| decode_checkpoint(bytes.get(offset as usize..)?))
        .collect();
    if valid.is_empty() && bytes.iter().any(|&byte| byte != 0) {
        tracing::error!("spool checkpoint is corrupt; re-sending every spooled record");
    }
    Ok(valid.into_iter().max().unwrap_or(0))
}

/// The checkpoint file, kept open by the forwarder. Each update overwrites one slot in place and
/// `fdatasync`s it: the file never changes size, so the update costs no journal commit (a
/// rename-based update would, and would stall the writer's group commits behind it).
pub(super) struct CheckpointFile {
    pub(super) file: File,
    pub(super) next_slot: usize,
}

impl CheckpointFile {
    pub(super) fn open(dir: &Path) -> io::Result<CheckpointFile> {
        let path = dir.join("checkpoint");
        let current = read_checkpoint(dir)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        if file.metadata()?.len() != CHECKPOINT_FILE_LEN {
            file.set_len(0)?;
            file.set_len(CHECKPOINT_FILE_LEN)?;
            let mut checkpoint = CheckpointFile { file, next_slot: 0 };
            checkpoint.write(current)?;
            checkpoint.file.sync_all()?;
            sync_dir(dir)?;
            return Ok(checkpoint);
        }
        Ok(CheckpointFile { file, next_slot: 0 })
    }

    pub(super) fn write(&mut self, seq: u64) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        let offset = CHECKPOINT_SLOTS[self.next_slot];
        self.file.write_all_at(&encode_checkpoint(seq), offset)?;
        self.file.sync_data()?;
        self.next_slot = (self.next_slot + 1) % CHECKPOINT_SLOTS.len();
        Ok(())
    }
}

/// Writes a checkpoint (tests and tools; the forwarder keeps a [`CheckpointFile`] open).
#[cfg(test)]
pub(super) fn write_checkpoint(dir: &Path, seq: u64) -> io::Result<()> {
    CheckpointFile::open(dir)?.write(seq)
}
