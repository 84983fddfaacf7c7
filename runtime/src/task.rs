//! Spawned tasks with a result, on any runtime.

use std::future::Future;

use crate::runtime::Runtime;

/// A spawned task's result, to await. If the task panicked or was dropped by its runtime,
/// [`join`](Self::join) says so instead of hanging.
#[derive(Debug)]
pub struct Task<T> {
    rx: async_channel::Receiver<T>,
}

impl<T> Task<T> {
    /// The task's output, or `None` if it ended without one (it panicked).
    pub async fn join(self) -> Option<T> {
        self.rx.recv().await.ok()
    }
}

/// Runs `future` on `rt` in the background and returns a handle to its output.
pub fn spawn<R, F>(rt: &R, future: F) -> Task<F::Output>
where
    R: Runtime,
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (tx, rx) = async_channel::bounded(1);
    rt.spawn(async move {
        let out = future.await;
        // The receiver may be gone: nobody wants the result any more.
        let _ = tx.try_send(out);
    });
    Task { rx }
}
