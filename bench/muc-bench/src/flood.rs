//! `--flood N`: one more client pipelines N groupchat messages into a room of its own, as fast as
//! its socket takes them, while the measured rooms run as usual: what one flooding user costs
//! everyone else (the measured rooms' latency) and what the server did with the flood.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Result;
use tokio::io::AsyncWriteExt;
use tokio::task::JoinHandle;

use crate::client::Client;

/// Messages written per socket write.
const CHUNK: usize = 100;

#[derive(Default)]
struct Counts {
    written: AtomicU64,
    reflected: AtomicU64,
    refused: AtomicU64,
}

/// The flooder, in its room, ready.
pub struct Flooder {
    client: Client,
    room: String,
}

/// The flood under way.
pub struct Flood {
    messages: usize,
    counts: Arc<Counts>,
    tasks: [JoinHandle<()>; 2],
}

impl Flooder {
    pub fn new(client: Client, room: String) -> Flooder {
        Flooder { client, room }
    }

    /// Starts writing `messages` messages, and reading what comes back.
    pub fn start(self, messages: usize) -> Flood {
        let Flooder { client, room } = self;
        let Client {
            mut reader,
            mut writer,
        } = client;
        let counts = Arc::new(Counts::default());
        let written = counts.clone();
        let writing = tokio::spawn(async move {
            for first in (0..messages).step_by(CHUNK) {
                let chunk: String = (first..(first + CHUNK).min(messages))
                    .map(|n| format!("<message type='groupchat' to='{room}'><body>flood {n}</body></message>"))
                    .collect();
                if writer.write_all(chunk.as_bytes()).await.is_err() {
                    return;
                }
                written
                    .written
                    .fetch_add((messages - first).min(CHUNK) as u64, Ordering::Relaxed);
            }
            // Kept open: the server must not see the flooder leave.
            std::future::pending::<()>().await;
        });
        let read = counts.clone();
        let reading = tokio::spawn(async move {
            while let Ok(stanza) = reader.element().await {
                if stanza.name() != "message" {
                    continue;
                }
                match stanza.attr("type") {
                    Some("error") => read.refused.fetch_add(1, Ordering::Relaxed),
                    Some("groupchat") => read.reflected.fetch_add(1, Ordering::Relaxed),
                    _ => 0,
                };
            }
        });
        Flood {
            messages,
            counts,
            tasks: [writing, reading],
        }
    }
}

impl Flood {
    /// What became of the flood by now; stops it.
    pub fn stop(self) -> Result<serde_json::Value> {
        for task in &self.tasks {
            task.abort();
        }
        let count = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Ok(serde_json::json!({
            "flood_messages": self.messages,
            "flood_written": count(&self.counts.written),
            "flood_reflected": count(&self.counts.reflected),
            "flood_refused": count(&self.counts.refused),
        }))
    }
}
