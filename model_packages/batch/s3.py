"""S3 reads signed with SigV4, standard library only (the model image carries no boto3): what a
SageMaker Processing job's `batch --resume-from s3://...` needs to see the chunks an earlier,
killed run of the same execution already uploaded (List Objects V2, Get Object).

Credentials, in boto3's order for what a container has: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY
(+ AWS_SESSION_TOKEN), else the container credentials endpoint (AWS_CONTAINER_CREDENTIALS_FULL_URI
or http://169.254.170.2 + AWS_CONTAINER_CREDENTIALS_RELATIVE_URI, with
AWS_CONTAINER_AUTHORIZATION_TOKEN). The region is AWS_REGION or AWS_DEFAULT_REGION;
AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL (an emulator, path-style) replaces the regional endpoint.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from model_packages.errors import KaizenError

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
CONTAINER_HOST = "http://169.254.170.2"
_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


class S3Error(KaizenError):
    """S3 or the credentials endpoint refused a request, or a setting is missing."""


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str
    token: str | None = None


def credentials(env: Mapping[str, str], timeout: float = 10) -> Credentials:
    if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        return Credentials(env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], env.get("AWS_SESSION_TOKEN") or None)
    relative = env.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
    url = env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI") or (CONTAINER_HOST + relative if relative else "")
    if not url:
        raise S3Error("no AWS credentials: neither AWS_ACCESS_KEY_ID nor a container credentials endpoint is set")
    token = env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN")
    request = urllib.request.Request(url, headers={"Authorization": token} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data = json.load(response)
        return Credentials(data["AccessKeyId"], data["SecretAccessKey"], data.get("Token"))
    except (urllib.error.URLError, ValueError, KeyError, TypeError) as error:
        raise S3Error(f"the container credentials endpoint gave no credentials: {error}") from None


def split_uri(uri: str) -> tuple[str, str]:
    """s3://bucket/prefix/ -> (bucket, "prefix/"); the prefix always ends with '/' (or is empty)."""
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise S3Error(f"{uri!r} is not an s3://bucket/prefix/ location")
    prefix = parsed.path.lstrip("/")
    return parsed.netloc, prefix if not prefix or prefix.endswith("/") else prefix + "/"


def _quote(text: str, safe: str = "-_.~") -> str:
    return urllib.parse.quote(text, safe=safe)


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


@dataclass(frozen=True)
class S3Client:
    region: str
    creds: Credentials
    endpoint: str | None = None  # scheme://host[:port] of an emulator: path-style requests
    timeout: float = 60

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> S3Client:
        region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
        if not region:
            raise S3Error("no AWS region: set AWS_REGION (SageMaker sets it in processing jobs)")
        endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None
        return cls(region, credentials(env), endpoint.rstrip("/") if endpoint else None)

    def _url(self, bucket: str, key: str) -> tuple[str, str, str]:
        """(scheme, host, canonical path) of an object (key "" for the bucket)."""
        if self.endpoint:
            parsed = urllib.parse.urlparse(self.endpoint)
            return parsed.scheme, parsed.netloc, "/" + _quote(bucket) + "/" + _quote(key, "-_.~/")
        if "." in bucket:  # a dotted name does not match the wildcard certificate: path-style
            return "https", f"s3.{self.region}.amazonaws.com", "/" + _quote(bucket) + "/" + _quote(key, "-_.~/")
        return "https", f"{bucket}.s3.{self.region}.amazonaws.com", "/" + _quote(key, "-_.~/")

    def _get(self, bucket: str, key: str = "", query: Mapping[str, str] | None = None) -> bytes:
        scheme, host, path = self._url(bucket, key)
        canonical_query = "&".join(f"{_quote(k)}={_quote(v)}" for k, v in sorted((query or {}).items()))
        now = datetime.now(UTC)
        stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        headers = {"host": host, "x-amz-content-sha256": EMPTY_SHA256, "x-amz-date": stamp}
        if self.creds.token:
            headers["x-amz-security-token"] = self.creds.token
        signed = ";".join(sorted(headers))
        canonical = "\n".join(["GET", path, canonical_query, *(f"{k}:{headers[k]}" for k in sorted(headers)), "",
                               signed, EMPTY_SHA256])
        scope = f"{day}/{self.region}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        key_bytes = _hmac(_hmac(_hmac(_hmac(f"AWS4{self.creds.secret_key}".encode(), day), self.region), "s3"),
                          "aws4_request")
        signature = hmac.new(key_bytes, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={self.creds.access_key}/{scope}, "
                                    f"SignedHeaders={signed}, Signature={signature}")
        url = f"{scheme}://{host}{path}" + (f"?{canonical_query}" if canonical_query else "")
        where = f"s3://{bucket}/{key}"
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=self.timeout) as response:
                return response.read()
        except urllib.error.HTTPError as error:
            code = ""
            with contextlib.suppress(ET.ParseError):
                code = ET.fromstring(error.read()).findtext("Code") or ""
            raise S3Error(f"GET {where}: HTTP {error.code} {code}".rstrip()) from None
        except urllib.error.URLError as error:
            raise S3Error(f"GET {where}: {error.reason}") from None

    def list(self, bucket: str, prefix: str) -> Iterator[str]:
        """Every key under `prefix` (List Objects V2, page by page)."""
        token = ""
        while True:
            query = {"list-type": "2", "prefix": prefix, **({"continuation-token": token} if token else {})}
            root = ET.fromstring(self._get(bucket, "", query))
            for element in root.iter(f"{_NS}Key"):
                if element.text:
                    yield element.text
            token = root.findtext(f"{_NS}NextContinuationToken") or ""
            if root.findtext(f"{_NS}IsTruncated") != "true" or not token:
                return

    def get(self, bucket: str, key: str) -> bytes:
        return self._get(bucket, key)
