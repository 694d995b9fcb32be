//! AWS Signature Version 4 (`AWS4-HMAC-SHA256`) request signing, as a pure function of the
//! request, the credentials and the time.
//!
//! Follows the AWS IAM user guide, "Create a signed AWS API request" and "Elements of an AWS API
//! request signature", checked against AWS's published Signature Version 4 test suite:
//!
//! 1. Canonical request: `METHOD\nCanonicalURI\nCanonicalQuery\nCanonicalHeaders\n\nSignedHeaders\nHexSHA256(payload)`.
//!    The canonical URI is the path as it is sent on the wire, normalized (empty, `.` and `..`
//!    segments removed) and with every segment URI-encoded once more. Because the wire path is
//!    already encoded, a character such as the `:` in a Bedrock model id (`…-v1:0`) travels as
//!    `%3A` and is signed as `%253A`: every service but S3 encodes path segments twice. The
//!    canonical query string is every `name=value` pair decoded, re-encoded with the RFC 3986
//!    unreserved set, and sorted by name then value. Canonical headers are lowercased names with
//!    trimmed values (inner runs of spaces collapsed), values of repeated names joined with `,`,
//!    sorted by name; the signed-headers list is the same names joined with `;`.
//! 2. String to sign: `AWS4-HMAC-SHA256\n<x-amz-date>\n<yyyymmdd>/<region>/<service>/aws4_request\nHexSHA256(canonical request)`.
//! 3. Signing key: `HMAC("AWS4" + secret, date)` → region → service → `"aws4_request"`, and the
//!    signature is the hex HMAC-SHA256 of the string to sign under that key.
//! 4. The request carries `x-amz-date`, `x-amz-security-token` when the credentials are
//!    temporary (it is part of the signed headers), and
//!    `Authorization: AWS4-HMAC-SHA256 Credential=<key id>/<scope>, SignedHeaders=<list>, Signature=<hex>`.
//!
//! This module never reads the clock, the environment or the network, and never logs: the
//! caller passes the time and gets the headers to add. The secret key appears only inside the
//! HMAC chain, never in any returned string.

use std::time::SystemTime;

use aws_lc_rs::{digest, hmac};

/// The signing algorithm name.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Long-term or temporary AWS credentials.
#[derive(Clone, Copy)]
pub struct Credentials<'a> {
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
    /// The STS session token of temporary credentials.
    pub session_token: Option<&'a str>,
}

impl std::fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("access_key_id", &self.access_key_id).finish_non_exhaustive()
    }
}

/// The parts of an HTTP request that are signed.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The path exactly as sent on the wire (already percent-encoded), e.g. `/model/a%3A0/converse-stream`.
    pub path: &'a str,
    /// The query string without the `?` (may be empty).
    pub query: &'a str,
    /// The headers to sign; must include `host`. `x-amz-date`, `x-amz-security-token` and
    /// `authorization` are added by [`sign`] and must not be passed here.
    pub headers: &'a [(&'a str, &'a str)],
    pub payload: &'a [u8],
}

/// The outcome of signing: what to add to the request, and the intermediate strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// Headers to add to the request, in order: `x-amz-date`, `x-amz-security-token` (when the
    /// credentials have one) and `authorization`.
    pub headers: Vec<(String, String)>,
    pub canonical_request: String,
    pub string_to_sign: String,
    /// Hex signature.
    pub signature: String,
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

/// Hex SHA-256 of `data` (the payload hash; `e3b0c442…` for an empty body).
pub fn hex_sha256(data: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, data).as_ref())
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data);
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Percent-encodes every byte outside the RFC 3986 unreserved set (`A-Z a-z 0-9 - . _ ~`),
/// with uppercase hex; `/` is kept when `keep_slash`.
pub fn uri_encode(input: &[u8], keep_slash: bool) -> String {
    let mut out = String::with_capacity(input.len());
    for &b in input {
        if is_unreserved(b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_decode(input: &str) -> Vec<u8> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex_at = |j: usize| bytes.get(j).and_then(|c| (*c as char).to_digit(16));
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (hex_at(i + 1), hex_at(i + 2))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// The canonical URI of a wire path: dot segments and empty segments removed, every segment
/// encoded again (so `%3A` becomes `%253A`), a trailing slash kept, `/` for an empty path.
pub fn canonical_uri(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::from("/");
    out.push_str(&segments.iter().map(|s| uri_encode(s.as_bytes(), false)).collect::<Vec<_>>().join("/"));
    let trailing = path.ends_with('/') || path.ends_with("/.") || path.ends_with("/..");
    if trailing && !segments.is_empty() {
        out.push('/');
    }
    out
}

/// The canonical query string: pairs decoded, re-encoded, sorted by name then value.
pub fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (name, value) = p.split_once('=').unwrap_or((p, ""));
            (uri_encode(&percent_decode(name), false), uri_encode(&percent_decode(value), false))
        })
        .collect();
    pairs.sort();
    pairs.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join("&")
}

fn collapse_spaces(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for word in value.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// Canonical headers (one `name:value\n` line each) and the signed-headers list.
pub fn canonical_headers(headers: &[(&str, &str)]) -> (String, String) {
    let mut grouped: std::collections::BTreeMap<String, Vec<String>> = std::collections::BTreeMap::new();
    for (name, value) in headers {
        grouped.entry(name.trim().to_ascii_lowercase()).or_default().push(collapse_spaces(value));
    }
    let mut canonical = String::new();
    for (name, values) in &grouped {
        canonical.push_str(name);
        canonical.push(':');
        canonical.push_str(&values.join(","));
        canonical.push('\n');
    }
    let signed = grouped.keys().cloned().collect::<Vec<_>>().join(";");
    (canonical, signed)
}

/// The canonical request of step 1.
pub fn canonical_request(req: &Request<'_>, headers: &[(&str, &str)]) -> (String, String) {
    let (canonical, signed) = canonical_headers(headers);
    let text = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method.to_ascii_uppercase(),
        canonical_uri(req.path),
        canonical_query(req.query),
        canonical,
        signed,
        hex_sha256(req.payload)
    );
    (text, signed)
}

/// `<yyyymmdd>/<region>/<service>/aws4_request`.
pub fn scope(date: &str, region: &str, service: &str) -> String {
    format!("{date}/{region}/{service}/aws4_request")
}

/// The string to sign of step 2.
pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!("{ALGORITHM}\n{amz_date}\n{scope}\n{}", hex_sha256(canonical_request.as_bytes()))
}

/// The signing key of step 3.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac_sha256(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, service.as_bytes());
    hmac_sha256(&k_service, b"aws4_request")
}

/// Hex HMAC-SHA256 of the string to sign under the signing key.
pub fn signature(key: &[u8; 32], string_to_sign: &str) -> String {
    hex(&hmac_sha256(key, string_to_sign.as_bytes()))
}

/// `YYYYMMDDTHHMMSSZ` for a point in time (UTC).
pub fn amz_date(now: SystemTime) -> String {
    // humantime gives `2015-08-30T12:36:00Z`; SigV4 wants the basic ISO 8601 form.
    humantime::format_rfc3339_seconds(now).to_string().chars().filter(|c| *c != '-' && *c != ':').collect()
}

/// Signs `req` for `service` in `region` at `now`.
pub fn sign(req: &Request<'_>, creds: &Credentials<'_>, region: &str, service: &str, now: SystemTime) -> Signed {
    let amz_date = amz_date(now);
    sign_at(req, creds, region, service, &amz_date)
}

/// [`sign`] with the `x-amz-date` value given directly (`YYYYMMDDTHHMMSSZ`).
pub fn sign_at(req: &Request<'_>, creds: &Credentials<'_>, region: &str, service: &str, amz_date: &str) -> Signed {
    let date = amz_date.get(..8).unwrap_or(amz_date);
    let mut headers: Vec<(&str, &str)> = req.headers.to_vec();
    headers.push(("x-amz-date", amz_date));
    if let Some(token) = creds.session_token {
        headers.push(("x-amz-security-token", token));
    }
    let (canonical_request, signed_headers) = canonical_request(req, &headers);
    let scope = scope(date, region, service);
    let string_to_sign = string_to_sign(amz_date, &scope, &canonical_request);
    let key = signing_key(creds.secret_access_key, date, region, service);
    let signature = signature(&key, &string_to_sign);
    let authorization = format!(
        "{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
        creds.access_key_id
    );
    let mut out = vec![("x-amz-date".to_string(), amz_date.to_string())];
    if let Some(token) = creds.session_token {
        out.push(("x-amz-security-token".to_string(), token.to_string()));
    }
    out.push(("authorization".to_string(), authorization));
    Signed { headers: out, canonical_request, string_to_sign, signature }
}

#[cfg(test)]
mod tests {
    //! Expected values are AWS's own: the IAM `ListUsers` example of the SigV4 documentation and
    //! files of the Signature Version 4 test suite (`aws-sig-v4-test-suite/<name>/<name>.creq`,
    //! `.sts`, `.authz`), credentials `AKIDEXAMPLE` / `wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY`,
    //! 2015-08-30T12:36:00Z, `us-east-1`, service `service`.
    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const CREDS: Credentials<'static> =
        Credentials { access_key_id: "AKIDEXAMPLE", secret_access_key: SECRET, session_token: None };
    const DATE: &str = "20150830T123600Z";
    const HOST: (&str, &str) = ("Host", "example.amazonaws.com");
    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn suite(method: &str, path: &str, query: &str, headers: &[(&str, &str)], body: &[u8]) -> Signed {
        let req = Request { method, path, query, headers, payload: body };
        sign_at(&req, &CREDS, "us-east-1", "service", DATE)
    }

    fn authz(s: &Signed) -> &str {
        s.headers.iter().find(|(k, _)| k == "authorization").map(|(_, v)| v.as_str()).unwrap()
    }

    #[test]
    fn the_documented_iam_list_users_example() {
        let headers =
            [("Host", "iam.amazonaws.com"), ("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")];
        let req = Request {
            method: "GET",
            path: "/",
            query: "Action=ListUsers&Version=2010-05-08",
            headers: &headers,
            payload: b"",
        };
        let s = sign_at(&req, &CREDS, "us-east-1", "iam", DATE);
        assert_eq!(
            s.canonical_request,
            "GET\n/\nAction=ListUsers&Version=2010-05-08\ncontent-type:application/x-www-form-urlencoded; charset=utf-8\nhost:iam.amazonaws.com\nx-amz-date:20150830T123600Z\n\ncontent-type;host;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex_sha256(s.canonical_request.as_bytes()),
            "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59"
        );
        assert_eq!(
            s.string_to_sign,
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/iam/aws4_request\nf536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59"
        );
        assert_eq!(s.signature, "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7");
    }

    #[test]
    fn get_vanilla() {
        let s = suite("GET", "/", "", &[HOST], b"");
        assert_eq!(
            s.canonical_request,
            format!("GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n{EMPTY}")
        );
        assert_eq!(
            s.string_to_sign,
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\nbb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63"
        );
        assert_eq!(
            authz(&s),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
        assert_eq!(s.headers[0], ("x-amz-date".to_string(), DATE.to_string()));
    }

    #[test]
    fn get_vanilla_query_order_key_case() {
        let s = suite("GET", "/", "Param2=value2&Param1=value1", &[HOST], b"");
        assert_eq!(
            s.canonical_request,
            format!(
                "GET\n/\nParam1=value1&Param2=value2\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n{EMPTY}"
            )
        );
        assert_eq!(
            s.string_to_sign.lines().last(),
            Some("816cd5b414d056048ba4f7c5386d6e0533120fb1fcfa93762cf0fc39e2cf19e0")
        );
        assert_eq!(
            authz(&s),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
        );
        // get-vanilla-query-order-key: equal names are ordered by value.
        let s = suite("GET", "/", "Param1=value2&Param1=Value1", &[HOST], b"");
        assert_eq!(s.canonical_request.lines().nth(2), Some("Param1=Value1&Param1=value2"));
        assert_eq!(s.signature, "eedbc4e291e521cf13422ffca22be7d2eb8146eecf653089df300a15b2382bd1");
    }

    #[test]
    fn post_vanilla_and_form_body() {
        let s = suite("POST", "/", "", &[HOST], b"");
        assert_eq!(
            s.string_to_sign.lines().last(),
            Some("553f88c9e4d10fc9e109e2aeb65f030801b70c2f6468faca261d401ae622fc87")
        );
        assert_eq!(s.signature, "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b");

        let s =
            suite("POST", "/", "", &[("Content-Type", "application/x-www-form-urlencoded"), HOST], b"Param1=value1");
        assert_eq!(
            s.canonical_request,
            "POST\n/\n\ncontent-type:application/x-www-form-urlencoded\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\ncontent-type;host;x-amz-date\n9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e"
        );
        assert_eq!(
            s.string_to_sign,
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n42a5e5bb34198acb3e84da4f085bb7927f2bc277ca766e6d19c73c2154021281"
        );
        assert_eq!(
            authz(&s),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"
        );
    }

    #[test]
    fn header_values_are_trimmed_and_duplicates_joined() {
        let s = suite("GET", "/", "", &[HOST, ("My-Header1", " value1"), ("My-Header2", " \"a   b   c\"")], b"");
        assert_eq!(
            s.canonical_request,
            format!(
                "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value1\nmy-header2:\"a b c\"\nx-amz-date:20150830T123600Z\n\nhost;my-header1;my-header2;x-amz-date\n{EMPTY}"
            )
        );
        assert_eq!(
            authz(&s),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;my-header1;my-header2;x-amz-date, Signature=acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736"
        );
        // get-header-key-duplicate
        let s = suite(
            "GET",
            "/",
            "",
            &[HOST, ("My-Header1", "value2"), ("My-Header1", "value2"), ("My-Header1", "value1")],
            b"",
        );
        assert!(s.canonical_request.contains("\nmy-header1:value2,value2,value1\n"));
        assert_eq!(s.signature, "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea");
    }

    #[test]
    fn session_token_is_signed() {
        let token = "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==";
        let creds = Credentials { session_token: Some(token), ..CREDS };
        let req = Request { method: "POST", path: "/", query: "", headers: &[HOST], payload: b"" };
        let s = sign_at(&req, &creds, "us-east-1", "service", DATE);
        assert_eq!(
            s.canonical_request,
            format!(
                "POST\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\nx-amz-security-token:{token}\n\nhost;x-amz-date;x-amz-security-token\n{EMPTY}"
            )
        );
        assert_eq!(
            s.string_to_sign.lines().last(),
            Some("c237e1b440d4c63c32ca95b5b99481081cb7b13c7e40434868e71567c1a882f6")
        );
        assert_eq!(
            authz(&s),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date;x-amz-security-token, Signature=85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead"
        );
        assert_eq!(s.headers[1], ("x-amz-security-token".to_string(), token.to_string()));
    }

    #[test]
    fn paths_are_normalized_and_encoded() {
        // get-space, get-utf8, get-unreserved and the normalize-path group of the suite.
        let s = suite("GET", "/example space/", "", &[HOST], b"");
        assert_eq!(s.canonical_request.lines().nth(1), Some("/example%20space/"));
        assert_eq!(s.signature, "652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741");
        let s = suite("GET", "/\u{1234}", "", &[HOST], b"");
        assert_eq!(s.signature, "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85");
        let unreserved = "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let s = suite("GET", unreserved, "", &[HOST], b"");
        assert_eq!(s.canonical_request.lines().nth(1), Some(unreserved));
        assert_eq!(s.signature, "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f");
        let s = suite("GET", "//example//", "", &[HOST], b"");
        assert_eq!(s.canonical_request.lines().nth(1), Some("/example/"));
        assert_eq!(s.signature, "9a624bd73a37c9a373b5312afbebe7a714a789de108f0bdfe846570885f57e84");
        let s = suite("GET", "/./example", "", &[HOST], b"");
        assert_eq!(s.signature, "ef75d96142cf21edca26f06005da7988e4f8dc83a165a80865db7089db637ec5");
        for p in ["/example1/example2/../..", "/example/..", "//", "/./"] {
            assert_eq!(
                suite("GET", p, "", &[HOST], b"").signature,
                "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
                "{p}"
            );
        }
        // get-vanilla-utf8-query
        let s = suite("GET", "/", "\u{1234}=bar", &[HOST], b"");
        assert_eq!(s.canonical_request.lines().nth(2), Some("%E1%88%B4=bar"));
        assert_eq!(s.signature, "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04");
    }

    #[test]
    fn bedrock_model_ids_are_encoded_twice_in_the_canonical_uri() {
        // The wire path carries `%3A`; AWS signs the encoding of the wire path.
        assert_eq!(
            canonical_uri("/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse-stream"),
            "/model/anthropic.claude-3-5-sonnet-20240620-v1%253A0/converse-stream"
        );
        assert_eq!(uri_encode(b"us.anthropic.claude-v1:0", false), "us.anthropic.claude-v1%3A0");
        assert_eq!(uri_encode(b"arn:aws:x/y", false), "arn%3Aaws%3Ax%2Fy");
    }

    #[test]
    fn formats_the_amz_date() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_440_938_160);
        assert_eq!(amz_date(t), DATE);
    }
}
