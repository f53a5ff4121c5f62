//! A TCP proxy between one instance and PostgreSQL that can cut that instance's
//! notification listener alone.
//!
//! All of the instance's PostgreSQL traffic goes through it (its `DATABASE_URL` names the
//! proxy): the crate has no separate URL for the listening connection, and adding one only
//! for the soak would test a configuration nobody runs. The proxy tells the listener apart
//! by its startup message, which carries `application_name = tower-app-sessions
//! notifications` (the pool's connections carry none); the URL asks for `sslmode=disable`
//! so that message is readable. Cutting closes the listener's connection and refuses new
//! ones (closes them right after their startup message) until restored; the pool's
//! connections pass untouched.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The listening connection's `application_name` (the crate's `Notifications`).
const LISTENER_NAME: &str = "tower-app-sessions notifications";
const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
/// A startup message bigger than this is not one.
const MAX_STARTUP: usize = 10_000;

pub(super) struct PgProxy {
    pub port: u16,
    cut: Arc<watch::Sender<bool>>,
    accept: JoinHandle<()>,
}

impl PgProxy {
    pub(super) async fn start(upstream: u16) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let cut = Arc::new(watch::Sender::new(false));
        let accept = tokio::spawn({
            let cut = Arc::clone(&cut);
            async move {
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        continue;
                    };
                    tokio::spawn(serve(client, upstream, cut.subscribe()));
                }
            }
        });
        Ok(Self { port, cut, accept })
    }

    /// Drops the listener's connection and refuses new ones.
    pub(super) fn cut_listener(&self) {
        self.cut.send_replace(true);
    }

    pub(super) fn restore_listener(&self) {
        self.cut.send_replace(false);
    }
}

impl Drop for PgProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Reads one length-prefixed startup-phase message (`int32 length` including itself).
async fn read_message(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await?;
    let n = u32::from_be_bytes(len) as usize;
    if !(8..=MAX_STARTUP).contains(&n) {
        return Err(std::io::Error::other("not a startup message"));
    }
    let mut message = vec![0u8; n];
    message[..4].copy_from_slice(&len);
    stream.read_exact(&mut message[4..]).await?;
    Ok(message)
}

/// The `application_name` parameter of a startup message (protocol 3.0: `int32 len,
/// int32 version`, then `name\0value\0` pairs ending with `\0`).
fn application_name(message: &[u8]) -> Option<&str> {
    let mut fields = message.get(8..)?.split(|b| *b == 0);
    while let (Some(key), Some(value)) = (fields.next(), fields.next()) {
        if key.is_empty() {
            break;
        }
        if key == b"application_name" {
            return std::str::from_utf8(value).ok();
        }
    }
    None
}

async fn serve(mut client: TcpStream, upstream: u16, mut cut: watch::Receiver<bool>) {
    let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let mut listener = false;
    // The startup phase: an SSL or GSS request first (answered with one byte), then the
    // startup message with the parameters.
    loop {
        let Ok(message) = read_message(&mut client).await else {
            return;
        };
        let code = u32::from_be_bytes([message[4], message[5], message[6], message[7]]);
        if server.write_all(&message).await.is_err() {
            return;
        }
        if code == SSL_REQUEST || code == GSSENC_REQUEST {
            let mut answer = [0u8; 1];
            if server.read_exact(&mut answer).await.is_err()
                || client.write_all(&answer).await.is_err()
            {
                return;
            }
            if answer[0] == b'N' {
                continue;
            }
            // Encrypted from here on: the name cannot be read; treat it as the pool's.
            break;
        }
        listener = application_name(&message) == Some(LISTENER_NAME);
        break;
    }
    if !listener {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
        return;
    }
    if *cut.borrow_and_update() {
        return;
    }
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = cut.wait_for(|cut| *cut) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::application_name;

    #[test]
    fn the_application_name_is_read_from_a_startup_message() {
        let mut message = vec![0, 0, 0, 0, 0, 3, 0, 0];
        for field in [
            "user",
            "postgres",
            "application_name",
            super::LISTENER_NAME,
            "database",
            "soak",
        ] {
            message.extend_from_slice(field.as_bytes());
            message.push(0);
        }
        message.push(0);
        let len = (message.len() as u32).to_be_bytes();
        message[..4].copy_from_slice(&len);
        assert_eq!(application_name(&message), Some(super::LISTENER_NAME));
        assert_eq!(application_name(&message[..20]), None);
        assert_eq!(application_name(&[0, 0, 0, 8, 0, 3, 0, 0]), None);
    }
}
