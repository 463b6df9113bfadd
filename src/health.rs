//! The router's health as `/health` reports it: whether Docker answers, whether the last
//! config reload was refused, which config generation is in force, and whether a Lua call has
//! been running for too long. Written by the Docker watcher, the reloader and the Lua threads,
//! read by the HTTP server.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::stats::RouteStats;
use crate::timefmt::now_ns;

/// What `/health` reports, written by the Docker watcher.
#[derive(Debug, Default)]
pub struct Health {
    docker_error: Mutex<Option<String>>,
    docker_up: AtomicBool,
    /// Why the latest config reload was refused, while no good config has replaced it.
    config_error: Mutex<Option<String>>,
    /// The number of the config in force.
    pub generation: AtomicU64,
    /// The threads that call Lua, each with the call it is in, if any.
    lua_calls: Mutex<Vec<Arc<LuaCall>>>,
}

/// The Lua call a thread is in, for the watchdog: a count hook cannot stop work inside one C
/// function (a Lua pattern backtracking over a long line), so a call that runs far past any
/// budget shows on `/health` and in `/metrics` instead.
#[derive(Debug)]
pub struct LuaCall {
    /// The thread (`router-0`, `batch-…`).
    pub thread: String,
    /// When the call began, in ns since the epoch; 0 when the thread is not in Lua.
    since_ns: AtomicI64,
    /// The route whose Lua runs.
    route: Mutex<Option<Arc<RouteStats>>>,
    /// For a router worker that could not run the latest config: the generation it stays on
    /// and why.
    behind: Mutex<Option<(u64, String)>>,
}

/// A Lua call seen in progress.
#[derive(Debug, Clone)]
pub struct Busy {
    pub thread: String,
    pub route: String,
    pub elapsed: Duration,
}

impl LuaCall {
    /// The thread starts a call of `route`'s Lua.
    pub fn begin(&self, route: &Arc<RouteStats>) {
        *self.route.lock().expect("lua call lock") = Some(route.clone());
        self.since_ns.store(now_ns(), Ordering::Relaxed);
    }

    /// The call has returned.
    pub fn end(&self) {
        self.since_ns.store(0, Ordering::Relaxed);
    }

    /// The thread could not take up the latest config and stays on `generation` (`None`: it
    /// runs the latest).
    pub fn set_behind(&self, behind: Option<(u64, String)>) {
        *self.behind.lock().expect("lua call lock") = behind;
    }

    /// The call in progress, if any.
    pub fn busy(&self) -> Option<Busy> {
        let since = self.since_ns.load(Ordering::Relaxed);
        if since == 0 {
            return None;
        }
        let route = self.route.lock().expect("lua call lock").as_ref().map(|r| r.label()).unwrap_or_default();
        let elapsed = Duration::from_nanos(now_ns().saturating_sub(since).max(0) as u64);
        Some(Busy { thread: self.thread.clone(), route, elapsed })
    }
}

impl Health {
    /// Records the Docker connection's state: `None` when connected.
    pub fn set_docker_error(&self, error: Option<String>) {
        if error.is_none() {
            self.docker_up.store(true, Ordering::Relaxed);
        }
        *self.docker_error.lock().expect("health lock") = error;
    }

    /// Records the outcome of a reload: `None` when the new config was accepted.
    pub fn set_config_error(&self, error: Option<String>) {
        *self.config_error.lock().expect("health lock") = error;
    }

    /// Why the latest reload was refused, while the config before it stays in force.
    pub fn config_error(&self) -> Option<String> {
        self.config_error.lock().expect("health lock").clone()
    }

    /// Registers a thread that calls Lua; it marks each call on the handle it gets.
    pub fn lua_thread(&self, thread: String) -> Arc<LuaCall> {
        let call = Arc::new(LuaCall {
            thread,
            since_ns: AtomicI64::new(0),
            route: Mutex::new(None),
            behind: Mutex::new(None),
        });
        let mut calls = self.lua_calls.lock().expect("health lock");
        // A thread that has ended (a batch thread of a removed route) leaves its handle here alone.
        calls.retain(|c| Arc::strong_count(c) > 1);
        calls.push(call.clone());
        call
    }

    /// The names of the threads that call Lua.
    pub fn lua_threads(&self) -> Vec<String> {
        let calls = self.lua_calls.lock().expect("health lock");
        calls.iter().filter(|c| Arc::strong_count(c) > 1).map(|c| c.thread.clone()).collect()
    }

    /// The Lua calls in progress, longest first.
    pub fn lua_busy(&self) -> Vec<Busy> {
        let mut busy: Vec<Busy> = self
            .lua_calls
            .lock()
            .expect("health lock")
            .iter()
            .filter(|c| Arc::strong_count(c) > 1)
            .filter_map(|c| c.busy())
            .collect();
        busy.sort_by_key(|b| std::cmp::Reverse(b.elapsed));
        busy
    }

    /// The threads that stay on an older config than the one in force: (thread, the
    /// generation they run, why).
    pub fn behind(&self) -> Vec<(String, u64, String)> {
        let calls = self.lua_calls.lock().expect("health lock");
        calls
            .iter()
            .filter(|c| Arc::strong_count(c) > 1)
            .filter_map(|c| {
                let behind = c.behind.lock().expect("lua call lock").clone()?;
                Some((c.thread.clone(), behind.0, behind.1))
            })
            .collect()
    }

    /// Whether Docker has been reachable at least once.
    pub fn docker_was_up(&self) -> bool {
        self.docker_up.load(Ordering::Relaxed)
    }

    /// The reason the router is not healthy, if any.
    pub fn problem(&self) -> Option<String> {
        if !self.docker_was_up() && self.docker_error.lock().expect("health lock").is_none() {
            return Some("connecting to docker".into());
        }
        self.docker_error.lock().expect("health lock").clone()
    }
}
