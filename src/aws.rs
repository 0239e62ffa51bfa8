//! Talking to AWS without an SDK: the credentials and region Lambda puts in the environment,
//! SigV4 signing (`aws-sigv4`, the SDK's own signer), and one JSON request over HTTPS. Used at
//! start only: the secret (`secrets`) and, at every connect, the RDS auth token (`store::iam`).

use std::fmt;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, SignableBody, SignableRequest, SignatureLocation, SigningInstructions, SigningSettings,
};
use aws_sigv4::sign::v4;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// A setting an AWS call needs that the environment does not hold (Lambda sets them all); the
/// caller says what needed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MissingSetting {
    pub variable: &'static str,
}

/// Why an AWS call failed. It never holds a credential, a signature or a request's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AwsError {
    /// The endpoint is not an `http://` or `https://` URL with a host.
    Endpoint { endpoint: String, why: String },
    /// The signer refused the request.
    Signing(String),
    /// No TCP connection to the endpoint.
    Connect { endpoint: String, why: String },
    /// The TLS handshake with the endpoint failed.
    Tls { endpoint: String, why: String },
    /// The HTTP exchange failed after connecting.
    Http { endpoint: String, why: String },
    /// No answer within the time a call at start may take.
    Timeout { endpoint: String, after: Duration },
}

impl fmt::Display for AwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AwsError::Endpoint { endpoint, why } => write!(f, "endpoint {endpoint}: {why}"),
            AwsError::Signing(why) => write!(f, "cannot sign the request: {why}"),
            AwsError::Connect { endpoint, why } => write!(f, "cannot connect to {endpoint}: {why}"),
            AwsError::Tls { endpoint, why } => write!(f, "TLS with {endpoint}: {why}"),
            AwsError::Http { endpoint, why } => write!(f, "{endpoint}: {why}"),
            AwsError::Timeout { endpoint, after } => {
                write!(f, "no answer from {endpoint} within {after:?}")
            }
        }
    }
}

impl std::error::Error for AwsError {}

/// The credentials of the function's role, as Lambda sets them; never printed.
#[derive(Clone)]
pub struct AwsCredentials {
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
}

impl fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl AwsCredentials {
    pub fn new(access_key_id: &str, secret_access_key: &str, session_token: Option<&str>) -> Self {
        AwsCredentials {
            access_key_id: access_key_id.to_owned(),
            secret_access_key: secret_access_key.to_owned(),
            session_token: session_token.map(str::to_owned),
        }
    }

    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and (optional) `AWS_SESSION_TOKEN`.
    pub fn from_lookup(lookup: &impl Fn(&str) -> Option<String>) -> Result<Self, MissingSetting> {
        let get = |variable: &'static str| {
            lookup(variable)
                .filter(|v| !v.is_empty())
                .ok_or(MissingSetting { variable })
        };
        Ok(AwsCredentials {
            access_key_id: get("AWS_ACCESS_KEY_ID")?,
            secret_access_key: get("AWS_SECRET_ACCESS_KEY")?,
            session_token: lookup("AWS_SESSION_TOKEN").filter(|v| !v.is_empty()),
        })
    }

    /// As the signer takes them (it converts them into its identity type).
    fn for_signer(&self) -> Credentials {
        Credentials::new(
            &self.access_key_id,
            &self.secret_access_key,
            self.session_token.clone(),
            None,
            "environment",
        )
    }
}

/// `AWS_REGION` (Lambda sets it).
pub fn region(lookup: &impl Fn(&str) -> Option<String>) -> Result<String, MissingSetting> {
    lookup("AWS_REGION")
        .filter(|r| !r.is_empty())
        .ok_or(MissingSetting {
            variable: "AWS_REGION",
        })
}

/// A SigV4-presigned GET of `url`, valid `expires_in` from `time`, without its scheme (what RDS
/// takes as an auth token).
pub fn presigned(
    credentials: &AwsCredentials,
    service: &str,
    region: &str,
    url: &str,
    expires_in: Duration,
    time: SystemTime,
) -> Result<String, AwsError> {
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(expires_in);
    let signable = SignableRequest::new("GET", url, std::iter::empty(), SignableBody::Bytes(&[]))
        .map_err(signing)?;
    let instructions = signed(credentials, service, region, time, settings, signable)?;
    // The signing parameters in the order the AWS CLI and botocore print them (the order does
    // not change what the token proves, but then the tokens are the same byte for byte).
    let mut signing: Vec<(&str, &str)> = instructions
        .params()
        .iter()
        .map(|(name, value)| (*name, value.as_ref()))
        .collect();
    signing.sort_by_key(|(name, _)| {
        PRESIGNED_ORDER
            .iter()
            .position(|known| known == name)
            .unwrap_or(PRESIGNED_ORDER.len())
    });
    let mut token = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .to_owned();
    for (name, value) in signing {
        token.push(if token.contains('?') { '&' } else { '?' });
        token.push_str(name);
        token.push('=');
        token.push_str(&query_escaped(value));
    }
    Ok(token)
}

/// SigV4 of `signable` for `service` in `region` at `time`: the headers or query parameters to
/// add to the request.
fn signed(
    credentials: &AwsCredentials,
    service: &str,
    region: &str,
    time: SystemTime,
    settings: SigningSettings,
    signable: SignableRequest<'_>,
) -> Result<SigningInstructions, AwsError> {
    let identity = credentials.for_signer().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(settings)
        .build()
        .map_err(signing)?
        .into();
    let (instructions, _signature) = sign(signable, &params).map_err(signing)?.into_parts();
    Ok(instructions)
}

fn signing(error: impl fmt::Display) -> AwsError {
    AwsError::Signing(error.to_string())
}

/// The order of a presigned URL's SigV4 parameters, as AWS's CLI writes them.
const PRESIGNED_ORDER: &[&str] = &[
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-SignedHeaders",
    "X-Amz-Expires",
    "X-Amz-Security-Token",
    "X-Amz-Signature",
];

/// `value` percent-encoded for a query string as SigV4 does (RFC 3986 unreserved characters
/// kept, everything else `%XX`).
pub fn query_escaped(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            escaped.push(byte as char);
        } else {
            escaped.push_str(&format!("%{byte:02X}"));
        }
    }
    escaped
}

/// An AWS JSON-protocol call (`X-Amz-Target`), signed with `credentials`: the answer's status
/// and body.
pub struct JsonCall<'a> {
    pub endpoint: &'a str,
    pub service: &'a str,
    pub region: &'a str,
    pub target: &'a str,
    pub body: String,
}

/// How long an AWS call at start may take; Lambda allows 10 s of init.
const CALL_TIMEOUT: Duration = Duration::from_secs(4);

impl JsonCall<'_> {
    pub async fn send(self, credentials: &AwsCredentials) -> Result<(u16, Vec<u8>), AwsError> {
        tokio::time::timeout(CALL_TIMEOUT, self.send_unbounded(credentials))
            .await
            .map_err(|_| AwsError::Timeout {
                endpoint: self.endpoint.to_owned(),
                after: CALL_TIMEOUT,
            })?
    }

    async fn send_unbounded(
        &self,
        credentials: &AwsCredentials,
    ) -> Result<(u16, Vec<u8>), AwsError> {
        let endpoint = |why: String| AwsError::Endpoint {
            endpoint: self.endpoint.to_owned(),
            why,
        };
        let uri: http::Uri = self
            .endpoint
            .parse()
            .map_err(|e: http::uri::InvalidUri| endpoint(e.to_string()))?;
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(endpoint("must be http:// or https://".into())),
        };
        let host = uri
            .host()
            .ok_or_else(|| endpoint("has no host".into()))?
            .to_owned();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let authority = uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .unwrap_or_else(|| host.clone());
        let mut request = http::Request::post(&uri)
            .header("host", &authority)
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", self.target)
            .body(Full::new(Bytes::from(self.body.clone())))
            .map_err(|e| endpoint(format!("makes no valid request: {e}")))?;
        let headers: Vec<(String, String)> = request
            .headers()
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    value.to_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let signable = SignableRequest::new(
            "POST",
            self.endpoint,
            headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
            SignableBody::Bytes(self.body.as_bytes()),
        )
        .map_err(signing)?;
        let settings = SigningSettings::default();
        signed(
            credentials,
            self.service,
            self.region,
            SystemTime::now(),
            settings,
            signable,
        )?
        .apply_to_request_http1x(&mut request);

        let stream = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| AwsError::Connect {
                endpoint: self.endpoint.to_owned(),
                why: e.to_string(),
            })?;
        let tls_failed = |e: native_tls::Error| AwsError::Tls {
            endpoint: self.endpoint.to_owned(),
            why: e.to_string(),
        };
        let answer = if tls {
            let stream =
                tokio_native_tls::TlsConnector::from(https_connector().map_err(tls_failed)?)
                    .connect(&host, stream)
                    .await
                    .map_err(tls_failed)?;
            exchange(stream, request).await
        } else {
            exchange(stream, request).await
        };
        answer.map_err(|e| AwsError::Http {
            endpoint: self.endpoint.to_owned(),
            why: e.to_string(),
        })
    }
}

/// The connector for AWS's HTTPS endpoints, made once per process: building one parses the
/// system's CA bundle (hundreds of certificates, most of the cold start at 128 MB's CPU), and a
/// start reads up to two secrets, then the credentials' secret again after a rotation.
fn https_connector() -> Result<native_tls::TlsConnector, native_tls::Error> {
    static CONNECTOR: std::sync::OnceLock<native_tls::TlsConnector> = std::sync::OnceLock::new();
    if let Some(connector) = CONNECTOR.get() {
        return Ok(connector.clone());
    }
    let connector = native_tls::TlsConnector::new()?;
    Ok(CONNECTOR.get_or_init(|| connector).clone())
}

/// One HTTP/1.1 request and its answer on `stream`.
async fn exchange<S>(
    stream: S,
    request: http::Request<Full<Bytes>>,
) -> Result<(u16, Vec<u8>), hyper::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let driving = tokio::spawn(connection);
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes().to_vec();
    driving.abort();
    Ok((status, body))
}
