//! `/internal_error` — mod_pywebsocket's `internal_error_wsh.py`: accepts, then closes with
//! 1011 (internal error) and an empty reason, which is what pywebsocket does when a handler
//! raises `BadOperationException`. The server waits for the client's close as usual.

use wshd_sdk::{CloseCode, Config, Connection, Error, Handler};

/// The internal-error handler.
pub struct InternalError;

impl Handler for InternalError {
    fn new(_config: &Config) -> Result<Self, Error> {
        Ok(InternalError)
    }

    async fn transfer_data(&self, mut conn: Connection) {
        let _ = conn.close(CloseCode::INTERNAL_ERROR, "").await;
    }
}

wshd_sdk::export_handler!(InternalError);
