//! Sweep jobs in worker processes, so that one job's crash cannot take the
//! sweep down.
//!
//! A job that aborts (a failed allocation, a stack overflow) or is killed
//! (the kernel's out-of-memory killer, `kill -9`) ends its process. Run in
//! the sweep's own process it would end the sweep, unrecorded, and every
//! rerun would die on it again. A [`WorkerPool`] runs each job in a child
//! process instead — the same executable started with a worker argument
//! (`dyadsim sweep-worker`) — and turns a child's death into an error the
//! sweep records as `failed` ("the job's process was killed by signal 9
//! (SIGKILL, e.g. the out-of-memory killer)…") before it goes on.
//!
//! Workers live as long as the sweep and run one job after another, so a
//! worker loads each dataset once ([`TrainingRunner`] shares it between its
//! jobs) and a sweep of short jobs does not pay a process start per job; a
//! worker that died is replaced for the next job.
//!
//! # Protocol
//!
//! One JSON object per line. The parent writes a [`Request`] to the
//! worker's stdin — the job's index, its configuration hash and its
//! complete configuration as TOML — and reads one [`Reply`] from its
//! stdout. The worker rebuilds and checks the configuration and compares
//! its hash with the parent's, so a job runs with exactly the configuration
//! the sweep recorded. The worker's stderr is passed through to the sweep's
//! (warnings), and its last lines are kept for the failure record of a
//! worker that died. End of input ends the worker; a worker whose parent
//! died stops its job after the batch in progress.

use super::{config_hash, run_catching_panics, Job, TrainingRunner};
use crate::experiment::config::Config;
use crate::experiment::train::{Interrupted, Observer};
use crate::experiment::RunResult;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};

/// A job sent to a worker.
#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    /// The job's grid index.
    pub index: usize,
    /// [`config_hash`] of its configuration, as the parent computed it.
    pub hash: String,
    /// The complete configuration ([`Config::to_toml_string`]).
    pub config_toml: String,
}

/// A worker's answer to a [`Request`].
#[derive(Debug, Serialize, Deserialize)]
pub struct Reply {
    /// The job's grid index (as requested).
    pub index: usize,
    /// The run's result, if it finished (ok or diverged).
    pub result: Option<RunResult>,
    /// Why it has no result (the error and its causes).
    pub error: Option<String>,
    /// The job was stopped before it finished (no result, not a failure).
    pub interrupted: bool,
}

/// Lines of a worker's stderr kept for the record of a worker that died.
const STDERR_TAIL_LINES: usize = 6;

/// One running worker process.
struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// The last lines the worker wrote to stderr.
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    /// Forwards stderr; joined when the worker is reaped, so the tail is
    /// complete.
    stderr_thread: Option<std::thread::JoinHandle<()>>,
}

/// Worker processes for a sweep's jobs; [`WorkerPool::run`] is a job runner
/// for [`super::run_sweep`]. Each of the sweep's parallel jobs holds one
/// worker while its job runs, so the pool grows to the sweep's parallelism.
pub struct WorkerPool {
    program: PathBuf,
    args: Vec<String>,
    idle: Mutex<Vec<Worker>>,
}

impl WorkerPool {
    /// Workers are started as `program args…` and inherit this process's
    /// environment (the SGEMM and rayon thread counts the sweep sets).
    pub fn new(program: PathBuf, args: Vec<String>) -> Self {
        Self {
            program,
            args,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Runs `job` in a worker: its result, its error, [`Interrupted`], or
    /// an error saying how the worker process died.
    pub fn run(&self, job: &Job) -> Result<RunResult> {
        let idle = self
            .idle
            .lock()
            .map_err(|_| anyhow::anyhow!("worker pool lock poisoned"))?
            .pop();
        let mut worker = match idle {
            Some(w) => w,
            None => self.spawn()?,
        };
        let request = Request {
            index: job.index,
            hash: job.hash.clone(),
            config_toml: job.config.raw().to_toml_string()?,
        };
        match exchange(&mut worker, &request) {
            Ok(reply) => {
                // The worker is healthy: keep it for the next job.
                if let Ok(mut idle) = self.idle.lock() {
                    idle.push(worker);
                }
                match (reply.result, reply.error, reply.interrupted) {
                    (_, _, true) => Err(Interrupted.into()),
                    (Some(result), _, false) => Ok(result),
                    (None, Some(error), false) => Err(anyhow::anyhow!(error)),
                    (None, None, false) => {
                        bail!("the worker replied with neither result nor error")
                    }
                }
            }
            Err(protocol_error) => Err(died(worker, protocol_error)),
        }
    }

    fn spawn(&self) -> Result<Worker> {
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().with_context(|| {
            format!(
                "cannot start a sweep worker ({} {})",
                self.program.display(),
                self.args.join(" ")
            )
        })?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            bail!("the sweep worker has no stdin, stdout or stderr pipe");
        };
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        let tail = stderr_tail.clone();
        let stderr_thread = std::thread::Builder::new()
            .name("sweep-worker-stderr".into())
            .spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    eprintln!("{line}");
                    if let Ok(mut t) = tail.lock() {
                        if t.len() == STDERR_TAIL_LINES {
                            t.pop_front();
                        }
                        t.push_back(line);
                    }
                }
            })
            .context("starting the worker's stderr reader")?;
        Ok(Worker {
            child,
            stdin,
            stdout: BufReader::new(stdout),
            stderr_tail,
            stderr_thread: Some(stderr_thread),
        })
    }
}

impl Drop for WorkerPool {
    /// Closing a worker's stdin ends it; waiting reaps it.
    fn drop(&mut self) {
        if let Ok(idle) = self.idle.get_mut() {
            for mut w in idle.drain(..) {
                drop(w.stdin);
                let _ = w.child.wait();
                if let Some(t) = w.stderr_thread.take() {
                    let _ = t.join();
                }
            }
        }
    }
}

/// Sends one request and reads its reply; an error means the worker is
/// unusable (it died, or wrote something that is not a reply).
fn exchange(worker: &mut Worker, request: &Request) -> Result<Reply> {
    let mut line = serde_json::to_string(request).context("job request to JSON")?;
    line.push('\n');
    worker
        .stdin
        .write_all(line.as_bytes())
        .and_then(|()| worker.stdin.flush())
        .context("sending the job to its worker")?;
    let mut answer = String::new();
    let n = worker
        .stdout
        .read_line(&mut answer)
        .context("reading the worker's reply")?;
    if n == 0 {
        bail!("the worker closed its output without a reply");
    }
    let reply: Reply = serde_json::from_str(&answer)
        .with_context(|| format!("the worker's reply is not a reply: {}", answer.trim()))?;
    if reply.index != request.index {
        bail!(
            "the worker answered job {} for job {}",
            reply.index,
            request.index
        );
    }
    Ok(reply)
}

/// The error of a job whose worker died (or broke the protocol): how the
/// process ended and the last lines it wrote to stderr.
fn died(mut worker: Worker, protocol_error: anyhow::Error) -> anyhow::Error {
    drop(worker.stdin);
    // A worker that broke the protocol but still runs is stopped.
    let status = match worker.child.try_wait() {
        Ok(Some(s)) => Ok(s),
        _ => {
            let _ = worker.child.kill();
            worker.child.wait()
        }
    };
    if let Some(t) = worker.stderr_thread.take() {
        let _ = t.join();
    }
    let how = match status {
        Ok(s) => exit_words(&s),
        Err(e) => format!("ended in an unknown way ({e})"),
    };
    let tail: Vec<String> = worker
        .stderr_tail
        .lock()
        .map(|t| t.iter().cloned().collect())
        .unwrap_or_default();
    let last_words = if tail.is_empty() {
        String::new()
    } else {
        format!("; its last words on stderr: {}", tail.join(" / "))
    };
    anyhow::anyhow!("the job's process {how} ({protocol_error:#}){last_words}")
}

/// How a process ended, in words: `exited with code 3`, `was killed by
/// signal 9 (SIGKILL, e.g. the out-of-memory killer)`, `aborted (SIGABRT,
/// e.g. a failed memory allocation)`.
pub fn exit_words(status: &std::process::ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            let name = match signal {
                6 => " (SIGABRT: the process aborted, e.g. on a failed memory allocation)",
                9 => " (SIGKILL, e.g. the kernel's out-of-memory killer or kill -9)",
                11 => " (SIGSEGV: a segmentation fault or stack overflow)",
                15 => " (SIGTERM)",
                _ => "",
            };
            return format!("was killed by signal {signal}{name}");
        }
    }
    match status.code() {
        Some(code) => format!("exited with code {code}"),
        None => "ended without an exit code".into(),
    }
}

/// Stops a worker's job when the sweep that started it is gone: the
/// parent's death re-parents the worker, so its parent id changes.
struct OrphanCheck {
    #[cfg(unix)]
    parent: u32,
}

impl OrphanCheck {
    fn new() -> Self {
        Self {
            #[cfg(unix)]
            parent: std::os::unix::process::parent_id(),
        }
    }
}

impl Observer for OrphanCheck {
    fn should_stop(&mut self) -> bool {
        #[cfg(unix)]
        {
            std::os::unix::process::parent_id() != self.parent
        }
        #[cfg(not(unix))]
        {
            false
        }
    }
}

/// The worker's side: reads [`Request`]s from `input` until it ends, runs
/// each job and writes its [`Reply`] to `output`. A job's error or panic is
/// a reply; only a broken pipe or an unreadable request ends the worker
/// with an error.
pub fn serve(input: impl BufRead, mut output: impl Write) -> Result<()> {
    let runner = TrainingRunner::default();
    for line in input.lines() {
        let line = line.context("reading a job request")?;
        if line.trim().is_empty() {
            continue;
        }
        let request: Request = serde_json::from_str(&line).context("parsing a job request")?;
        let outcome = run_catching_panics(|| run_request(&runner, &request));
        let reply = match outcome {
            Ok(result) => Reply {
                index: request.index,
                result: Some(result),
                error: None,
                interrupted: false,
            },
            Err(e) => Reply {
                index: request.index,
                result: None,
                interrupted: e.is::<Interrupted>(),
                error: Some(format!("{e:#}")),
            },
        };
        let mut text = serde_json::to_string(&reply).context("reply to JSON")?;
        text.push('\n');
        output
            .write_all(text.as_bytes())
            .and_then(|()| output.flush())
            .context("writing a job reply")?;
    }
    Ok(())
}

/// Rebuilds a request's configuration, checks it arrived unchanged, and
/// trains it.
fn run_request(runner: &TrainingRunner, request: &Request) -> Result<RunResult> {
    let table: toml::Table =
        toml::from_str(&request.config_toml).context("the job's configuration is not TOML")?;
    let config = Config::from_table(table)?.check()?;
    let hash = config_hash(config.raw())?;
    if hash != request.hash {
        bail!(
            "the job's configuration changed on its way to the worker (hash {} instead of {})",
            &hash[..12],
            &request.hash[..12.min(request.hash.len())]
        );
    }
    let job = Job {
        index: request.index,
        axes: Vec::new(),
        config,
        hash,
    };
    runner.run_observed(&job, &mut [&mut OrphanCheck::new()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_survives_the_trip_with_its_hash() {
        let mut config = Config::default();
        config.learning.alpha = 0.3;
        config.optimizer.lr = 0.000_7;
        let valid = config.clone().check().unwrap();
        let hash = config_hash(valid.raw()).unwrap();
        let toml_text = valid.raw().to_toml_string().unwrap();
        let table: toml::Table = toml::from_str(&toml_text).unwrap();
        let back = Config::from_table(table).unwrap().check().unwrap();
        assert_eq!(config_hash(back.raw()).unwrap(), hash);
    }

    #[test]
    fn a_request_whose_configuration_changed_is_refused() {
        let valid = Config::default().check().unwrap();
        let request = Request {
            index: 0,
            hash: "0".repeat(64),
            config_toml: valid.raw().to_toml_string().unwrap(),
        };
        let err = run_request(&TrainingRunner::default(), &request).unwrap_err();
        assert!(format!("{err:#}").contains("changed on its way"), "{err:#}");
    }

    #[test]
    fn a_bad_job_is_a_reply_not_the_end_of_the_worker() {
        let bad = Request {
            index: 3,
            hash: "x".into(),
            config_toml: "this is not = = toml".into(),
        };
        let input = format!("{}\n", serde_json::to_string(&bad).unwrap());
        let mut output = Vec::new();
        serve(input.as_bytes(), &mut output).unwrap();
        let reply: Reply = serde_json::from_slice(&output).unwrap();
        assert_eq!(reply.index, 3);
        assert!(reply.result.is_none() && !reply.interrupted);
        assert!(reply.error.unwrap().contains("not TOML"));
    }

    #[cfg(unix)]
    #[test]
    fn exit_statuses_are_named() {
        use std::os::unix::process::ExitStatusExt;
        let killed = std::process::ExitStatus::from_raw(9);
        assert!(exit_words(&killed).contains("signal 9 (SIGKILL"));
        let aborted = std::process::ExitStatus::from_raw(6);
        assert!(exit_words(&aborted).contains("SIGABRT"));
        let exited = std::process::ExitStatus::from_raw(3 << 8);
        assert_eq!(exit_words(&exited), "exited with code 3");
    }
}
