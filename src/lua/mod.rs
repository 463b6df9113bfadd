//! Every Lua state luaspout runs, and the rules they all run under.
//!
//! Three kinds of state run a config's Lua, each made by [`sandbox::new_state`] and watched by
//! one [`guard::Guard`]:
//!
//! - [`load`]: the state that validates a config (startup, every reload, `luaspout check`),
//!   whose declarations become the plain data of [`crate::config`];
//! - [`worker`]: one per router worker thread, running each route's `filter` and `format` over
//!   a batch of lines in one call;
//! - [`batch`]: one per HTTP route with a `batch(list)` function, on a thread of its own.
//!
//! [`spout`] is the library those states share. No Lua value ever crosses a thread: each
//! state runs the config's chunk itself and keeps the functions it declared.

pub mod batch;
pub mod guard;
pub mod load;
pub mod sandbox;
pub mod spout;
pub mod worker;

pub use load::{load, load_with_tests, validate, validate_with_tests};

/// The message of a Lua error without mlua's wrapping or the stack traceback:
/// `file:line: message`.
pub fn error_text(e: &mlua::Error) -> String {
    let without_traceback = |m: &str| m.split("\nstack traceback:").next().unwrap_or(m).to_string();
    match e {
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        mlua::Error::RuntimeError(m) => without_traceback(m),
        mlua::Error::CallbackError { cause, .. } => error_text(cause),
        mlua::Error::WithContext { context, cause } => format!("{context}: {}", error_text(cause)),
        other => other.to_string(),
    }
}
