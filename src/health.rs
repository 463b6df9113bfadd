//! The router's health as `/health` reports it: whether Docker answers, whether the last
//! config reload was refused, and which config generation is in force. Written by the Docker
//! watcher and the reloader, read by the HTTP server.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// What `/health` reports, written by the Docker watcher.
#[derive(Debug, Default)]
pub struct Health {
    docker_error: Mutex<Option<String>>,
    docker_up: AtomicBool,
    /// Why the latest config reload was refused, while no good config has replaced it.
    config_error: Mutex<Option<String>>,
    /// The number of the config in force.
    pub generation: AtomicU64,
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
