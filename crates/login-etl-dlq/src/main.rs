//! `login-etl-dlq`: what is in login-etl's dead-letter queue, and why, and sending it back.
//!
//! `list` reads every message of the dead-letter queue through the SQS API, deleting nothing:
//! it hides them while it reads (so it sees each once) and makes them visible again at the end.
//! For each it prints the messageId, the receive count, when it was first sent, and the reason
//! the function's own validation refuses its body, never a value. `redrive` sends all or the
//! named messages back to the source queue once the cause is fixed, each carrying the original
//! messageId and SentTimestamp in the message attribute `login-etl-redrive-of`, so that the
//! function stores it under the original's identity: a redrive repeated is still one row.

mod dlq;

use clap::{Parser, Subcommand};

use dlq::{DeadLetters, Redrive};

#[derive(Parser)]
#[command(version, about)]
struct Options {
    /// The dead-letter queue's URL.
    #[arg(long, env = "DLQ_URL")]
    dlq_url: String,
    /// SQS endpoint; without it the AWS SDK uses AWS_ENDPOINT_URL_SQS, AWS_ENDPOINT_URL or AWS.
    #[arg(long)]
    endpoint_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Every message: messageId, receives, first sent, why it is refused (never a value).
    List,
    /// Sends messages back to the queue they came from, and deletes them from this one.
    Redrive {
        /// The source queue's URL; by default the one queue that names this one as its
        /// dead-letter queue.
        #[arg(long)]
        to: Option<String>,
        /// Every message (received, sent back and deleted, ten at a time; not by an SQS
        /// message-move task, which would give each a new identity).
        #[arg(
            long,
            conflicts_with = "message_id",
            required_unless_present = "message_id"
        )]
        all: bool,
        /// Only these messages (repeatable).
        #[arg(long = "message-id")]
        message_id: Vec<String>,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let options = Options::parse();
    let dead_letters =
        DeadLetters::connect(&options.dlq_url, options.endpoint_url.as_deref()).await;
    let done = match options.command {
        Command::List => dead_letters.list().await.map(|listed| {
            for line in listed {
                println!("{line}");
            }
        }),
        Command::Redrive {
            to,
            all,
            message_id,
        } => {
            let which = if all {
                Redrive::All
            } else {
                Redrive::Only(message_id)
            };
            dead_letters
                .redrive(to, which)
                .await
                .map(|report| println!("{report}"))
        }
    };
    match done {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("login-etl-dlq: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
