//! Gives freed heap memory back to the operating system. glibc's malloc keeps the pages a finished
//! million-row step freed in its per-thread arenas, so without a trim the process stays at its peak size
//! long after the work is done; a periodic `malloc_trim(0)` returns them (measured in the README).

use std::time::Duration;

/// Returns free heap pages of every malloc arena to the OS. `true` if memory was released. A no-op on
/// allocators other than glibc's.
pub fn trim_heap() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only walks glibc's own arenas under their locks; it takes no pointers.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Trims the heap every `interval` (`app.memory_trim_interval_seconds`; zero disables it). Must be called
/// inside the Tokio runtime. The trim runs on the blocking pool: on a large heap it takes milliseconds.
pub fn spawn_heap_trimmer(interval: Duration) {
    if interval.is_zero() {
        return;
    }
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if tokio::task::spawn_blocking(trim_heap).await.is_err() {
                log::warn!("heap trim task failed");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trimming_after_a_large_free_gives_memory_back() {
        // Mid-sized blocks (below the mmap threshold) land in the arena; freeing every other one leaves
        // holes malloc keeps (only the arena's top is given back by itself).
        let blocks: Vec<Vec<u8>> = (0..2048).map(|i| vec![i as u8; 64 * 1024]).collect();
        let kept: Vec<Vec<u8>> = blocks.into_iter().step_by(2).collect();
        let released = trim_heap();
        assert_eq!(kept.len(), 1024);
        assert_eq!(released, cfg!(all(target_os = "linux", target_env = "gnu")), "freed holes are released");
    }
}
