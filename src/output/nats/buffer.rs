//! The nats output's buffer: records taken from the pipeline are encoded
//! into entries (packed with `batch_bytes`), kept in memory up to
//! `buffer_records` or spooled beyond, and their receipts given back once
//! the stream stored them.

use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::entry::{clean_subject, Entry};
use super::{Open, Publisher};
use crate::codec::encode;
use crate::config::{Encoder, WhenFull};
use crate::output::OutputMsg;

impl Publisher {
    /// Close the packed message being filled and queue it.
    pub(super) fn seal(&mut self) {
        let Some(open) = self.open.take() else {
            return;
        };
        self.held -= open.records as usize;
        self.enqueue(Entry {
            subject: open.subject,
            id: open.id,
            encoder: self.config.encoder,
            packed: Some(open.records),
            payload: Bytes::from(open.payload),
        })
    }

    /// Encode and buffer a batch from the pipeline.
    pub(super) fn take(&mut self, msg: OutputMsg) {
        let (batch, receipt) = match msg {
            OutputMsg::Batch(batch, _budget, receipt) => (batch, receipt),
            // Taken in order: everything before it is buffered (and, with
            // a spool, on disk), as the forward output answers. Dropping
            // the answer made every upgrade log "output is gone".
            OutputMsg::Flush(done) => {
                let _ = done.send(());
                return;
            }
            _ => return, // Reopen: nothing to reopen.
        };
        let mut lost = 0;
        let pack = self.config.batch_bytes;
        for record in &batch {
            if self.spool.is_none()
                && self.config.when_full == WhenFull::DropNewest
                && self.held >= self.config.buffer_records
            {
                self.dropped += 1;
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                lost += 1;
                continue;
            }
            if pack == 0 || self.subject.is_empty() {
                // Packed, the subject is fixed: rendered once.
                self.template.render(record, &mut self.subject);
                clean_subject(&mut self.subject);
            }
            self.buf.clear();
            encode::payload(self.config.encoder, record, &mut self.buf);
            let id = self.next_seq;
            self.next_seq += 1;
            if pack == 0 {
                self.enqueue(Entry {
                    subject: self.subject.clone(),
                    id: format!("{}-{id}", self.instance),
                    encoder: self.config.encoder,
                    packed: None,
                    payload: Bytes::copy_from_slice(&self.buf),
                });
                continue;
            }
            // The subject is fixed (config checks it), so size alone
            // decides.
            let fits = self
                .open
                .as_ref()
                .is_some_and(|o| o.payload.len() + 4 + self.buf.len() <= pack);
            if !fits {
                self.seal();
            }
            let open = self.open.get_or_insert_with(|| Open {
                subject: self.subject.clone(),
                id: format!("{}-{id}", self.instance),
                records: 0,
                // Under load messages fill: allocate once, no regrowth.
                payload: Vec::with_capacity(pack),
            });
            // Frames no larger than 16 MiB reach an output.
            let len = u32::try_from(self.buf.len()).unwrap_or(u32::MAX);
            open.payload.extend_from_slice(&len.to_be_bytes());
            open.payload.extend_from_slice(&self.buf);
            open.records += 1;
            self.held += 1;
        }
        // Dropped records never enter (nor get stored). A batch with one is
        // never all written: its receipt goes now, unwritten (the
        // acknowledged sender re-sends it).
        self.entered += (batch.len() - lost) as u64;
        if let (Some(r), 0) = (receipt, lost) {
            self.receipts.push_back((self.entered, r));
        }
    }

    /// Queue a message, or spool it: once anything is on disk, everything
    /// newer goes there too, so order holds.
    fn enqueue(&mut self, entry: Entry) {
        if let Some(spool) = &mut self.spool {
            if !spool.is_empty() || self.held >= self.config.buffer_records {
                match spool.push(&entry.blob()) {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::error!(output = %self.name, error = %e, "Spool write failed; keeping the record in memory.");
                    }
                }
            }
        }
        self.held += entry.records() as usize;
        self.queue.push_back(entry);
    }

    /// `n` more records are stored in the stream: give back the receipts
    /// (see `output::receipt`) of the batches now all stored, counting
    /// records in the order they entered, as the forward output does.
    pub(super) fn stored_receipts(&mut self, n: usize) {
        self.stored += n as u64;
        while self
            .receipts
            .front()
            .is_some_and(|(upto, _)| *upto <= self.stored)
        {
            if let Some((_, r)) = self.receipts.pop_front() {
                r.written();
            }
        }
    }

    /// Move spooled records into memory while there is room.
    pub(super) fn refill_from_spool(&mut self) {
        let Some(spool) = &mut self.spool else { return };
        while !spool.is_empty() && self.held < self.config.buffer_records {
            match spool.pop_segment(Encoder::Pickle) {
                Ok(blobs) => {
                    for b in blobs {
                        match Entry::from_blob(b).and_then(|e| e.reencode(self.config.encoder)) {
                            Some(e) => {
                                self.held += e.records() as usize;
                                self.queue.push_back(e);
                            }
                            None => {
                                tracing::error!(output = %self.name, "A spooled record does not decode; dropped.")
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(output = %self.name, error = %e, "Spool read failed; segment skipped.");
                }
            }
        }
    }

    /// Shutdown deadline passed: spool what is left, or report it lost.
    pub(super) fn give_up(&mut self) {
        self.seal();
        let mut left: Vec<Entry> = self
            .inflight
            .drain(..)
            .filter(|f| !f.acked)
            .map(|f| f.entry)
            .collect();
        left.extend(self.queue.drain(..));
        if let Some(spool) = &mut self.spool {
            let blobs: Vec<Bytes> = left.iter().map(|e| Bytes::from(e.blob())).collect();
            match spool.prepend(&blobs) {
                Ok(()) => {
                    tracing::info!(output = %self.name, records = spool.on_disk(), "Unacknowledged records kept in the spool for the next start.");
                    return;
                }
                Err(e) => {
                    tracing::error!(output = %self.name, error = %e, "Cannot spool unacknowledged records.");
                }
            }
        }
        if !left.is_empty() {
            let lost: u64 = left.iter().map(Entry::records).sum();
            tracing::error!(output = %self.name, lost, "Shutting down with records the stream did not acknowledge in time.");
        }
    }
}
