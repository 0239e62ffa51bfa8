//! Queues on LocalStack's SQS (started by `make test`, which exports LOCALSTACK_ENDPOINT_URL): a
//! fresh queue per test, with its dead-letter queue, and the calls a test needs to fill and
//! inspect it. The same LocalStack serves the Lambda API (`common::lambda`).

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_sqs::types::{QueueAttributeName, SendMessageBatchRequestEntry};
use aws_sdk_sqs::Client;

/// LocalStack accepts any credentials; these are what the tests and login-etl-esm use.
pub const ENV: &[(&str, &str)] = &[
    ("AWS_ACCESS_KEY_ID", "test"),
    ("AWS_SECRET_ACCESS_KEY", "test"),
    ("AWS_REGION", "us-east-1"),
    // Never probe the EC2 metadata address for credentials or a region.
    ("AWS_EC2_METADATA_DISABLED", "true"),
];

/// LocalStack's endpoint, checked to answer: a missing LocalStack fails the test, it never
/// skips it.
pub fn endpoint() -> String {
    let url = std::env::var("LOCALSTACK_ENDPOINT_URL").unwrap_or_else(|_| {
        panic!(
            "LOCALSTACK_ENDPOINT_URL is not set: these tests need LocalStack (SQS and Lambda with \
             the local executor); run `make test`, which installs and starts it"
        )
    });
    let authority = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let address: SocketAddr = authority
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .unwrap_or_else(|| panic!("LOCALSTACK_ENDPOINT_URL={url} is not an http://host:port URL"));
    if let Err(error) = TcpStream::connect_timeout(&address, Duration::from_secs(2)) {
        panic!("LocalStack is not reachable at {url} ({error}); run `make test`, which starts it");
    }
    url
}

pub fn client() -> Client {
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint())
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
        .build();
    Client::from_conf(config)
}

/// A queue of one test's own, named `{prefix}-{pid}-{n}` (`.fifo` for FIFO queues).
pub struct TestQueue {
    pub client: Client,
    pub url: String,
    pub dlq_url: Option<String>,
}

impl TestQueue {
    /// `max_receive_count`: receives after which SQS moves a message to the dead-letter queue.
    pub async fn standard(
        prefix: &str,
        visibility_secs: u32,
        max_receive_count: Option<u32>,
    ) -> TestQueue {
        Self::create(prefix, false, visibility_secs, max_receive_count).await
    }

    pub async fn fifo(
        prefix: &str,
        visibility_secs: u32,
        max_receive_count: Option<u32>,
    ) -> TestQueue {
        Self::create(prefix, true, visibility_secs, max_receive_count).await
    }

    async fn create(
        prefix: &str,
        fifo: bool,
        visibility_secs: u32,
        max_receive_count: Option<u32>,
    ) -> TestQueue {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "{prefix}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let client = client();
        let suffix = if fifo { ".fifo" } else { "" };
        let mut dlq_url = None;
        let mut redrive = None;
        if let Some(count) = max_receive_count {
            let url = create_queue(&client, &format!("{name}-dlq{suffix}"), fifo, &[]).await;
            let arn = queue_arn(&client, &url).await;
            redrive = Some(format!(
                r#"{{"deadLetterTargetArn":"{arn}","maxReceiveCount":"{count}"}}"#
            ));
            dlq_url = Some(url);
        }
        let mut attributes = vec![(
            QueueAttributeName::VisibilityTimeout,
            visibility_secs.to_string(),
        )];
        if let Some(policy) = redrive {
            attributes.push((QueueAttributeName::RedrivePolicy, policy));
        }
        let url = create_queue(&client, &format!("{name}{suffix}"), fifo, &attributes).await;
        TestQueue {
            client,
            url,
            dlq_url,
        }
    }

    /// Sends the bodies in order (batches of ten) and returns their messageIds in that order.
    pub async fn send_all(&self, bodies: &[String]) -> Vec<String> {
        let mut ids = Vec::with_capacity(bodies.len());
        for chunk in bodies.chunks(10) {
            let entries = chunk.iter().enumerate().map(|(i, body)| {
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(body)
                    .build()
                    .unwrap()
            });
            let output = self
                .client
                .send_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries.collect()))
                .send()
                .await
                .expect("SendMessageBatch");
            assert!(
                output.failed().is_empty(),
                "some sends failed: {:?}",
                output.failed()
            );
            let mut sent: Vec<_> = output
                .successful()
                .iter()
                .map(|s| (s.id().parse::<usize>().unwrap(), s.message_id().to_owned()))
                .collect();
            sent.sort();
            ids.extend(sent.into_iter().map(|(_, id)| id));
        }
        ids
    }

    /// Sends one message to a FIFO queue; the deduplication id is explicit.
    pub async fn send_to_group(&self, group: &str, deduplication_id: &str, body: &str) -> String {
        let output = self
            .client
            .send_message()
            .queue_url(&self.url)
            .message_group_id(group)
            .message_deduplication_id(deduplication_id)
            .message_body(body)
            .send()
            .await
            .expect("SendMessage");
        output.message_id().unwrap().to_owned()
    }

    /// The queue's ARN, which an event source mapping names.
    pub async fn arn(&self) -> String {
        queue_arn(&self.client, &self.url).await
    }

    /// (visible, in flight, delayed) messages in the queue.
    pub async fn depth(&self) -> (u64, u64, u64) {
        depth(&self.client, &self.url).await
    }

    /// The same of the dead-letter queue.
    pub async fn dead_letter_depth(&self) -> (u64, u64, u64) {
        let url = self
            .dlq_url
            .as_ref()
            .expect("the queue has a dead-letter queue");
        depth(&self.client, url).await
    }

    /// Every message in the dead-letter queue: (messageId, body), each once.
    pub async fn dead_letters(&self) -> Vec<(String, String)> {
        let url = self
            .dlq_url
            .as_ref()
            .expect("the queue has a dead-letter queue");
        let mut found: Vec<(String, String)> = Vec::new();
        loop {
            let output = self
                .client
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                // Long enough that nothing is received twice while we read.
                .visibility_timeout(300)
                .send()
                .await
                .expect("ReceiveMessage on the DLQ");
            let messages = output.messages.unwrap_or_default();
            if messages.is_empty() {
                return found;
            }
            for m in messages {
                found.push((m.message_id.unwrap(), m.body.unwrap_or_default()));
            }
        }
    }
}

async fn create_queue(
    client: &Client,
    name: &str,
    fifo: bool,
    attributes: &[(QueueAttributeName, String)],
) -> String {
    let mut request = client.create_queue().queue_name(name);
    if fifo {
        request = request.attributes(QueueAttributeName::FifoQueue, "true");
    }
    for (name, value) in attributes {
        request = request.attributes(name.clone(), value);
    }
    let output = request.send().await.unwrap_or_else(|e| {
        panic!(
            "CreateQueue {name}: {}",
            aws_sdk_sqs::error::DisplayErrorContext(e)
        )
    });
    output.queue_url().unwrap().to_owned()
}

async fn queue_arn(client: &Client, url: &str) -> String {
    let output = client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("GetQueueAttributes");
    output.attributes().unwrap()[&QueueAttributeName::QueueArn].clone()
}

async fn depth(client: &Client, url: &str) -> (u64, u64, u64) {
    let output = client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .expect("GetQueueAttributes");
    let attributes = output.attributes().unwrap();
    let count = |name: QueueAttributeName| attributes.get(&name).map_or(0, |v| v.parse().unwrap());
    (
        count(QueueAttributeName::ApproximateNumberOfMessages),
        count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        count(QueueAttributeName::ApproximateNumberOfMessagesDelayed),
    )
}

/// An SQS endpoint in front of LocalStack's that passes every call through but refuses one
/// action (`X-Amz-Target: AmazonSQS.<action>`) with an access-denied error, as an SQS whose
/// permissions lack it would: how a test makes `login-etl-dlq`'s delete from the dead-letter
/// queue fail after its send succeeded. Plain HTTP/1.1 with a Content-Length, as the AWS SDK
/// sends it; stopped when dropped.
pub struct RefusingProxy {
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl RefusingProxy {
    pub async fn start(action: &str) -> RefusingProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let upstream = endpoint();
        let target = format!("AmazonSQS.{action}");
        let task = tokio::spawn(async move {
            let client = reqwest::Client::new();
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(pass_through(
                    socket,
                    client.clone(),
                    upstream.clone(),
                    target.clone(),
                ));
            }
        });
        RefusingProxy { url, task }
    }
}

impl Drop for RefusingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves one connection's requests, one after another.
async fn pass_through(
    socket: tokio::net::TcpStream,
    client: reqwest::Client,
    upstream: String,
    refused: String,
) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let (reader, mut writer) = socket.into_split();
    let mut reader = BufReader::new(reader);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut parts = request_line.split_whitespace();
        let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
            return;
        };
        let (method, path) = (method.to_owned(), path.to_owned());
        let mut headers: Vec<(String, String)> = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
            }
        }
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        let length: usize = header("content-length").map_or(0, |v| v.parse().unwrap());
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).await.is_err() {
            return;
        }
        let (status, content_type, payload) = if header("x-amz-target").as_deref()
            == Some(refused.as_str())
        {
            (
                400,
                "application/x-amz-json-1.0".to_owned(),
                br#"{"__type": "com.amazonaws.sqs#AccessDenied", "message": "refused by the test's proxy"}"#.to_vec(),
            )
        } else {
            let mut request = client.request(
                method.parse().unwrap(),
                format!("{}{path}", upstream.trim_end_matches('/')),
            );
            for (name, value) in &headers {
                if !matches!(
                    name.as_str(),
                    "host" | "content-length" | "connection" | "transfer-encoding"
                ) {
                    request = request.header(name.as_str(), value.as_str());
                }
            }
            let response = request.body(body).send().await.expect("LocalStack answers");
            let status = response.status().as_u16();
            let content_type = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("application/x-amz-json-1.0")
                .to_owned();
            (
                status,
                content_type,
                response.bytes().await.unwrap().to_vec(),
            )
        };
        let head = format!(
            "HTTP/1.1 {status} {}\r\ncontent-type: {content_type}\r\nx-amzn-requestid: proxy\r\ncontent-length: {}\r\n\r\n",
            if status == 200 { "OK" } else { "Error" },
            payload.len()
        );
        if writer.write_all(head.as_bytes()).await.is_err()
            || writer.write_all(&payload).await.is_err()
        {
            return;
        }
    }
}
