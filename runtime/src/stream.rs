//! Frame pipelining: independent frames in flight on several cores at once.
//!
//! tract splits one inference over threads only inside its large matrix products, so a small
//! model gains little from more threads (and a stream of frames is not one inference). When
//! frames do not depend on each other (an inspection line, a camera feeding a classifier),
//! running N frames at once on N single-threaded tract states uses every core fully. Results
//! come back in the order the frames went in. Two latencies are reported next to the
//! throughput: a frame's compute time on its worker, and its time from submission to being
//! handed back in order (waiting for a free worker and for earlier frames included), since a
//! deeper pipeline trades latency for throughput. A frame is taken from the source only when a
//! worker is free, so a live source hands over its freshest frame rather than a queued one.

use crate::error::{Result, RuntimeError};
use crate::model::LoadedModel;
use crate::stats::LatencyStats;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tract_onnx::prelude::*;

/// What a pipelined run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PipelineStats {
    pub workers: usize,
    pub frames: usize,
    /// Frames per second over the whole stream.
    pub throughput_per_s: f64,
    /// From a frame's submission to its result being handed back in order.
    pub latency: LatencyStats,
    /// A frame's inference alone, on its worker (one thread): what pipelining costs each
    /// frame in memory bandwidth and caches shared with the other workers.
    pub compute: LatencyStats,
}

/// Run every frame of `frames` through `model` on `workers` threads, each with its own tract
/// state, and call `on_output(index, outputs)` in input order. One frame is handed over at a
/// time, and only to a free worker, so memory stays bounded whatever the stream's length. The
/// model should be loaded with one thread (`LoadOptions::threads = 1`): the parallelism is across frames.
pub fn run_stream<I, F>(
    model: &LoadedModel,
    workers: usize,
    frames: I,
    mut on_output: F,
) -> Result<PipelineStats>
where
    I: IntoIterator<Item = Vec<Tensor>>,
    I::IntoIter: Send,
    F: FnMut(usize, Vec<Tensor>) -> Result<()>,
{
    let workers = workers.max(1);
    let plan = model.plan.clone();
    let path = model.path.clone();
    type Job = (usize, Instant, Vec<Tensor>);
    type Done = (usize, Instant, f64, TractResult<Vec<Tensor>>);
    // A rendezvous channel: the feeder's send completes only when a worker takes the frame.
    let (job_tx, job_rx) = sync_channel::<Job>(0);
    // Only the workers hold the receiver: when they stop (after an error), the feeder's next
    // send fails and it stops too.
    let job_rx = Arc::new(Mutex::new(job_rx));
    let stop = AtomicBool::new(false);
    let (done_tx, done_rx) = channel::<Done>();
    let frames = frames.into_iter();
    let start = Instant::now();
    let mut latencies = Vec::new();
    let mut computes = Vec::new();
    let outcome: Result<usize> = std::thread::scope(|scope| {
        for _ in 0..workers {
            let job_rx = job_rx.clone();
            let stop = &stop;
            let done_tx = done_tx.clone();
            let plan = plan.clone();
            scope.spawn(move || {
                let mut state = match plan.spawn() {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = done_tx.send((0, Instant::now(), 0.0, Err(e)));
                        return;
                    }
                };
                while !stop.load(Ordering::Relaxed) {
                    // The lock is held only while taking the next job.
                    let job = job_rx.lock().map(|rx| rx.recv());
                    let Ok(Ok((index, submitted, inputs))) = job else {
                        return;
                    };
                    let values = inputs.into_iter().map(|t| t.into_tvalue()).collect();
                    let began = Instant::now();
                    let out = state
                        .run(values)
                        .map(|o| o.into_iter().map(|v| v.into_tensor()).collect());
                    let compute_ms = began.elapsed().as_secs_f64() * 1e3;
                    if done_tx.send((index, submitted, compute_ms, out)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done_tx);
        drop(job_rx);
        // The feeder: its own thread, so the caller's thread can hand results on in order.
        scope.spawn(move || {
            for (index, inputs) in frames.enumerate() {
                if job_tx.send((index, Instant::now(), inputs)).is_err() {
                    return;
                }
            }
        });
        let mut pending: BTreeMap<usize, (Instant, Vec<Tensor>)> = BTreeMap::new();
        let mut next = 0usize;
        let mut failure: Option<RuntimeError> = None;
        for (index, submitted, compute_ms, out) in done_rx.iter() {
            match out {
                Ok(o) if failure.is_none() => {
                    computes.push(compute_ms);
                    pending.insert(index, (submitted, o));
                }
                Ok(_) => {}
                Err(e) => {
                    failure.get_or_insert(RuntimeError::tract(&path, "running", e));
                    stop.store(true, Ordering::Relaxed);
                }
            }
            while let Some((submitted, o)) = pending.remove(&next) {
                if let Err(e) = on_output(next, o) {
                    failure.get_or_insert(e);
                    stop.store(true, Ordering::Relaxed);
                }
                latencies.push(submitted.elapsed().as_secs_f64() * 1e3);
                next += 1;
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(next),
        }
    });
    let frames = outcome?;
    let seconds = start.elapsed().as_secs_f64();
    Ok(PipelineStats {
        workers,
        frames,
        throughput_per_s: frames as f64 / seconds.max(1e-9),
        latency: LatencyStats::from_samples(latencies, 0),
        compute: LatencyStats::from_samples(computes, 0),
    })
}
