//! Where published events are kept for replay (websocket.md C.6). The hub appends every event before fan-out;
//! the SQLite store implements this trait for durability, `MemoryEventLog` keeps a bounded window in memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::History;

pub trait EventLog: Send + Sync {
    /// Appends one event (its `seq` is the chat's previous highest + 1).
    fn append(&self, chat_id: &str, seq: u64, event_type: &str, json: &str) -> Result<(), String>;
    /// The chat's highest stored `seq` (0 if none).
    fn last_seq(&self, chat_id: &str) -> Result<u64, String>;
    /// The oldest retained `seq`, if any event is retained.
    fn oldest_seq(&self, chat_id: &str) -> Result<Option<u64>, String>;
    /// Events with `seq > after`, ascending, at most `limit`.
    fn events_after(&self, chat_id: &str, after: u64, limit: usize) -> Result<Vec<(u64, Arc<str>)>, String>;
    /// Identifies this history; it changes only when the history is wiped.
    fn epoch(&self) -> String;
    /// Appends one event under the next `seq` the log itself assigns, with `render(seq)` as its text, and
    /// returns both. A log shared by several processes (cluster mode) must assign the number and store the
    /// event in one transaction so `seq` stays strictly increasing per chat whichever process publishes;
    /// this default is for logs owned by one process, whose caller already serialises publishing per chat.
    fn append_next(
        &self,
        chat_id: &str,
        event_type: &str,
        render: &mut dyn FnMut(u64) -> String,
    ) -> Result<(u64, String), String> {
        let seq = self.last_seq(chat_id)? + 1;
        let text = render(seq);
        self.append(chat_id, seq, event_type, &text)?;
        Ok((seq, text))
    }
}

/// Keeps the newest `capacity` events per chat in memory; forgets everything on restart.
pub struct MemoryEventLog {
    capacity: usize,
    epoch: String,
    chats: Mutex<HashMap<String, (u64, History)>>,
}

impl MemoryEventLog {
    pub fn new(capacity: usize) -> Self {
        let epoch = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
        MemoryEventLog { capacity: capacity.max(1), epoch, chats: Mutex::new(HashMap::new()) }
    }
}

impl EventLog for MemoryEventLog {
    fn append(&self, chat_id: &str, seq: u64, _event_type: &str, json: &str) -> Result<(), String> {
        let mut chats = self.chats.lock().map_err(|_| "event log lock poisoned".to_string())?;
        let (last, history) = chats.entry(chat_id.to_string()).or_default();
        *last = seq;
        history.push_back((seq, Arc::from(json)));
        while history.len() > self.capacity {
            history.pop_front();
        }
        Ok(())
    }

    fn last_seq(&self, chat_id: &str) -> Result<u64, String> {
        let chats = self.chats.lock().map_err(|_| "event log lock poisoned".to_string())?;
        Ok(chats.get(chat_id).map(|(last, _)| *last).unwrap_or(0))
    }

    fn oldest_seq(&self, chat_id: &str) -> Result<Option<u64>, String> {
        let chats = self.chats.lock().map_err(|_| "event log lock poisoned".to_string())?;
        Ok(chats.get(chat_id).and_then(|(_, h)| h.front().map(|(s, _)| *s)))
    }

    fn events_after(&self, chat_id: &str, after: u64, limit: usize) -> Result<Vec<(u64, Arc<str>)>, String> {
        let chats = self.chats.lock().map_err(|_| "event log lock poisoned".to_string())?;
        Ok(chats
            .get(chat_id)
            .map(|(_, h)| h.iter().filter(|(s, _)| *s > after).take(limit).cloned().collect())
            .unwrap_or_default())
    }

    fn epoch(&self) -> String {
        self.epoch.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_next_numbers_after_the_last_stored_event() {
        let log = MemoryEventLog::new(10);
        log.append("c", 7, "progress", "{}").unwrap();
        let (seq, text) = log.append_next("c", "progress", &mut |seq| format!("{{\"seq\":{seq}}}")).unwrap();
        assert_eq!((seq, text.as_str()), (8, "{\"seq\":8}"));
        assert_eq!(log.last_seq("c").unwrap(), 8);
        assert_eq!(log.events_after("c", 7, 10).unwrap().len(), 1);
    }
}
