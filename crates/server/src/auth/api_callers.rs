//! Who is calling the API: the user of `[api] auth`, users of `[api] auth_file` and users in
//! the store, by password (HTTP basic), by a signed token (JWT, HS256) from
//! `/api/v1/login`, or by an API token. Every signed token is a login session kept in
//! the store ([`SessionRecord`]): deleting the session revokes the token.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use rand::Rng;
use rport_store::{ApiTokenRecord, SessionRecord, Store, StoreError, UserRecord};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::auth::agent_credentials::GeneratedCredential;
use crate::auth::user_groups::{roles_from_groups, roles_from_named_groups};
use crate::config::ApiSection;
use crate::config::user_file::UserFile;
use crate::domain::permissions::{add_roles, parse_roles};
use crate::domain::secrets::{hash_password, random_secret, verify_password};

pub const JWT_SECRET_KEY: &str = "jwt_secret";
/// How long a slow password check is remembered, so scripts using basic auth on every
/// request do not pay an argon2 hash each time.
const VERIFIED_TTL: Duration = Duration::from_secs(300);

use crate::domain::permissions::AuthUser;

/// API tokens look like RPort's, `<prefix>_<secret>` with a prefix of
/// [`TOKEN_PREFIX_LEN`] letters and digits, or (made by earlier rportd versions)
/// `rpt_<id>_<secret>`: the prefix or id finds the record, the secret is checked against
/// its hash.
const API_TOKEN_PREFIX: &str = "rpt_";
/// RPort's `APITokenPrefixLength`.
const TOKEN_PREFIX_LEN: usize = 8;
/// The scopes of API tokens, as RPort names them: `read` (GET only, no websockets),
/// `read+write` (everything), `clients-auth` (only agent credentials).
pub const TOKEN_SCOPES: [&str; 3] = ["read", "read+write", "clients-auth"];
/// `last_used_at` (and a session's `last_access_at`) is written at most this often per
/// token.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

pub struct ApiAuth {
    static_user: Option<(String, String)>,
    /// `[api] auth_file`, read again on SIGUSR1: looked up on every request, so a user taken
    /// out of the file is out at once, tokens and all.
    user_file: Option<Arc<UserFile>>,
    store: Arc<dyn Store>,
    jwt_key: Vec<u8>,
    /// Process-local key for the cache of verified passwords.
    cache_key: [u8; 32],
    /// Digest of (user, password) -> the hash it matched and when. A hit counts only while
    /// the user's hash is still that one, so a changed password or a deleted user takes
    /// effect at once, whoever changed it (the API or `rportd user`).
    verified: Mutex<HashMap<[u8; 32], (String, Instant)>>,
    /// Ids of tokens revoked by logout; kept in the store too, so a restart keeps them out.
    revoked: Mutex<std::collections::HashSet<String>>,
    /// When this node last wrote a session's last use, by token id.
    touched: Mutex<HashMap<String, Instant>>,
}

/// What a signed token may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenScope {
    /// Every route but `POST /api/v1/verify-2fa` (RPort's `ScopesAllExcluding2FaCheck`).
    Full,
    /// Only `POST /api/v1/verify-2fa`: the password was right, the second factor is due.
    SecondFactor,
    /// That, and `POST /api/v1/me/totp-secret`: the user has no TOTP secret yet.
    SecondFactorAndTotpSetup,
}

/// The path of the second factor's check.
pub const VERIFY_2FA_PATH: &str = "/api/v1/verify-2fa";
/// The path of the caller's own TOTP secret.
pub const TOTP_SECRET_PATH: &str = "/api/v1/me/totp-secret";

impl TokenScope {
    fn claim(self) -> &'static str {
        match self {
            Self::Full => "",
            Self::SecondFactor => "2fa",
            Self::SecondFactorAndTotpSetup => "2fa+totp-setup",
        }
    }

    fn from_claim(claim: &str) -> Option<Self> {
        [
            Self::Full,
            Self::SecondFactor,
            Self::SecondFactorAndTotpSetup,
        ]
        .into_iter()
        .find(|scope| scope.claim() == claim)
    }

    /// Whether a token of this scope may call `method path`.
    pub fn allows(self, method: &str, path: &str) -> bool {
        let path = path.trim_end_matches('/');
        let verify = method == "POST" && path == VERIFY_2FA_PATH;
        match self {
            Self::Full => path != VERIFY_2FA_PATH,
            Self::SecondFactor => verify,
            Self::SecondFactorAndTotpSetup => {
                verify || (method == "POST" && path == TOTP_SECRET_PATH)
            }
        }
    }
}

/// Where a session token is used from, for its session's "last used" fields.
pub struct SessionUse<'a> {
    pub user_agent: &'a str,
    pub ip: std::net::IpAddr,
}

#[derive(Serialize, Deserialize)]
struct Claims {
    username: String,
    iat: i64,
    exp: i64,
    jti: String,
    /// Stamp of the user's password when the token was issued: a new password, or a user
    /// deleted and made again under the same name, ends every token issued before.
    #[serde(default)]
    pw: String,
    /// The login session (RPort's `sessionID`); 0 in tokens made before sessions were kept.
    #[serde(default)]
    sid: i64,
    /// [`TokenScope::claim`]; absent for a full token.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    scope: String,
}

impl ApiAuth {
    /// Sets up API authentication. Without `[api] auth` and without users in the store, it
    /// creates user `admin` with a random password and returns it to be shown once.
    pub async fn load(
        api: &ApiSection,
        store: Arc<dyn Store>,
    ) -> Result<(Self, Option<GeneratedCredential>), StoreError> {
        let jwt_key = match &api.jwt_secret {
            Some(secret) => secret.expose().as_bytes().to_vec(),
            None => store
                .setting_or_insert(JWT_SECRET_KEY, &random_secret(48))
                .await?
                .into_bytes(),
        };
        let static_user = api
            .auth
            .as_ref()
            .map(|(user, password)| (user.clone(), password.expose().to_owned()));
        let user_file = api.auth_file.clone();
        let no_file_users = user_file
            .as_ref()
            .is_none_or(|file| file.users().is_empty());
        let mut generated = None;
        if static_user.is_none() && no_file_users && store.list_users().await?.is_empty() {
            let password = random_secret(20);
            let admin = UserRecord {
                username: "admin".into(),
                password_hash: hash_password(&password),
                is_admin: true,
                created_at: chrono::Utc::now(),
                roles: Default::default(),
                password_expired: false,
                two_fa_send_to: String::new(),
            };
            // Taken meanwhile (by `rportd user add`): that one stays.
            if store.insert_user(&admin).await? {
                generated = Some(GeneratedCredential {
                    id: "admin".into(),
                    password,
                });
            }
        }
        let revoked = store
            .revoked_tokens(chrono::Utc::now())
            .await?
            .into_iter()
            .collect();
        Ok((
            Self {
                static_user,
                user_file,
                store,
                jwt_key,
                cache_key: rand::rng().random(),
                verified: Mutex::new(HashMap::new()),
                revoked: Mutex::new(revoked),
                touched: Mutex::new(HashMap::new()),
            },
            generated,
        ))
    }

    /// The user of that name and the hash its password must match; `None` for the
    /// `[api] auth` user, whose password is compared as configured.
    /// A store that does not answer is an error, not "no such user": the caller gets a
    /// 503 instead of a 401 counted as a failed login.
    async fn find(&self, username: &str) -> Result<Option<(AuthUser, Option<String>)>, StoreError> {
        if let Some((user, _)) = &self.static_user
            && user == username
        {
            return Ok(Some((
                AuthUser::new(user.clone(), true, Default::default()),
                None,
            )));
        }
        if let Some(file) = &self.user_file
            && let Some(user) = file.users().iter().find(|u| u.username == username)
        {
            let mut roles = user.roles.clone();
            let granted = roles_from_named_groups(self.store.as_ref(), &user.groups).await?;
            add_roles(&mut roles, granted);
            let found = AuthUser::new(user.username.clone(), user.is_admin, roles);
            return Ok(Some((found, Some(user.password_hash.expose().to_owned()))));
        }
        let Some(record) = self.store.get_user(username).await? else {
            return Ok(None);
        };
        let mut roles = parse_roles(&record.roles);
        add_roles(
            &mut roles,
            roles_from_groups(self.store.as_ref(), username).await?,
        );
        let mut found = AuthUser::new(record.username, record.is_admin, roles);
        found.password_expired = record.password_expired;
        Ok(Some((found, Some(record.password_hash))))
    }

    /// The user of that name as it is now, for a token that names it.
    async fn user(&self, username: &str) -> Result<Option<AuthUser>, StoreError> {
        Ok(self.find(username).await?.map(|(user, _)| user))
    }

    /// Checks a username and password: `[api] auth`, then `[api] auth_file`, then the store.
    /// A name longer than any valid one is refused unlooked-up.
    pub async fn check_password(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Option<AuthUser>, StoreError> {
        if username.len() > crate::domain::names::MAX_USERNAME_LEN {
            return Ok(None);
        }
        let Some((user, hash)) = self.find(username).await? else {
            return Ok(None);
        };
        let Some(hash) = hash else {
            let Some(expected) = self.static_user.as_ref().map(|(_, p)| p.as_bytes()) else {
                return Ok(None);
            };
            return Ok(bool::from(password.as_bytes().ct_eq(expected)).then_some(user));
        };
        let cache_entry = self.cache_digest(username, password);
        if let Ok(cache) = self.verified.lock()
            && let Some((cached_hash, at)) = cache.get(&cache_entry)
            && at.elapsed() < VERIFIED_TTL
            && *cached_hash == hash
        {
            return Ok(Some(user));
        }
        let password = password.to_owned();
        let checked = hash.clone();
        let ok = tokio::task::spawn_blocking(move || verify_password(&password, &checked))
            .await
            .unwrap_or(false);
        if !ok {
            return Ok(None);
        }
        if let Ok(mut cache) = self.verified.lock() {
            cache.retain(|_, (_, at)| at.elapsed() < VERIFIED_TTL);
            cache.insert(cache_entry, (hash, Instant::now()));
        }
        Ok(Some(user))
    }

    fn cache_digest(&self, username: &str, password: &str) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(self.cache_key);
        hasher.update((username.len() as u64).to_be_bytes());
        hasher.update(username.as_bytes());
        hasher.update(password.as_bytes());
        hasher.finalize().into()
    }

    /// A short keyed digest of the user's current password hash (or, for `[api] auth`,
    /// password); `None` when the user no longer exists.
    async fn credential_stamp(
        &self,
        username: &str,
    ) -> Result<Option<(AuthUser, String)>, StoreError> {
        let Some((user, hash)) = self.find(username).await? else {
            return Ok(None);
        };
        let secret = match (hash, &self.static_user) {
            (Some(hash), _) => hash,
            (None, Some((_, password))) => password.clone(),
            (None, None) => return Ok(None),
        };
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.jwt_key) else {
            return Ok(None);
        };
        mac.update(b"credential-stamp\0");
        mac.update(username.as_bytes());
        mac.update(b"\0");
        mac.update(secret.as_bytes());
        Ok(Some((
            user,
            hex::encode(&mac.finalize().into_bytes()[..12]),
        )))
    }

    /// Opens a login session for `user`, valid for `lifetime`, and issues its signed
    /// token; `None` if the user was deleted meanwhile.
    pub async fn open_session(
        &self,
        user: &AuthUser,
        lifetime: Duration,
        scope: TokenScope,
        used: &SessionUse<'_>,
    ) -> Result<Option<(String, SessionRecord)>, StoreError> {
        let Some((_, stamp)) = self.credential_stamp(&user.username).await? else {
            return Ok(None);
        };
        let now = chrono::Utc::now();
        let exp = now.timestamp().saturating_add(lifetime.as_secs() as i64);
        let mut session = SessionRecord {
            id: 0,
            jti: uuid::Uuid::new_v4().to_string(),
            username: user.username.clone(),
            created_at: now,
            expires_at: chrono::DateTime::from_timestamp(exp, 0).unwrap_or(now),
            last_access_at: now,
            user_agent: bounded_user_agent(used.user_agent),
            ip_address: used.ip.to_string(),
        };
        session.id = self.store.insert_session(&session).await?;
        let claims = Claims {
            username: user.username.clone(),
            iat: now.timestamp(),
            exp,
            jti: session.jti.clone(),
            pw: stamp,
            sid: session.id,
            scope: scope.claim().to_owned(),
        };
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap_or_default());
        let signing_input = format!("{header}.{payload}");
        let signature = URL_SAFE_NO_PAD.encode(self.sign(signing_input.as_bytes()));
        Ok(Some((format!("{signing_input}.{signature}"), session)))
    }

    /// Revokes the tokens of sessions deleted from the store, at once on this node; the
    /// caller tells the other nodes (the returned token ids).
    pub async fn revoke_sessions(
        &self,
        sessions: &[SessionRecord],
    ) -> Result<Vec<String>, StoreError> {
        let mut revoked = Vec::with_capacity(sessions.len());
        for session in sessions {
            self.store
                .revoke_token(&session.jti, session.expires_at)
                .await?;
            self.revoked_elsewhere(&session.jti);
            revoked.push(session.jti.clone());
        }
        Ok(revoked)
    }

    /// When `/login` issued `token` (Unix seconds), if it is a valid second-factor token
    /// ([`TokenScope::SecondFactor`] or [`TokenScope::SecondFactorAndTotpSetup`]).
    pub fn second_factor_issued_at(&self, token: &str) -> Option<i64> {
        let claims = self.verified_claims(token)?;
        match TokenScope::from_claim(&claims.scope)? {
            TokenScope::Full => None,
            _ => Some(claims.iat),
        }
    }

    fn sign(&self, input: &[u8]) -> Vec<u8> {
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.jwt_key) {
            Ok(mac) => mac,
            Err(_) => return Vec::new(), // HMAC accepts keys of any length
        };
        mac.update(input);
        mac.finalize().into_bytes().to_vec()
    }

    /// A token's claims if its signature, algorithm and expiry check out and it was not
    /// revoked.
    fn verified_claims(&self, token: &str) -> Option<Claims> {
        let (signing_input, signature) = token.rsplit_once('.')?;
        let (header, payload) = signing_input.split_once('.')?;
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.jwt_key).ok()?;
        mac.update(signing_input.as_bytes());
        mac.verify_slice(&signature).ok()?;
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
        if header.get("alg")?.as_str()? != "HS256" {
            return None;
        }
        let claims: Claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        if claims.exp <= chrono::Utc::now().timestamp() {
            return None;
        }
        let revoked = self
            .revoked
            .lock()
            .is_ok_and(|revoked| revoked.contains(&claims.jti));
        (!revoked).then_some(claims)
    }

    /// Revokes a valid token at once (logout); returns the user it belonged to and the
    /// token's id, which the other nodes of a cluster must hear of.
    pub async fn revoke(&self, token: &str) -> Result<Option<(String, String)>, StoreError> {
        let Some(claims) = self.verified_claims(token) else {
            return Ok(None);
        };
        let expires_at = chrono::DateTime::from_timestamp(claims.exp, 0).unwrap_or_default();
        self.store.revoke_token(&claims.jti, expires_at).await?;
        self.revoked_elsewhere(&claims.jti);
        // The token's id must match too: a session id alone could name another session
        // after `rportd migrate`, which copies no sessions.
        let sessions = self.store.list_sessions(&claims.username).await?;
        let own = sessions
            .iter()
            .find(|s| s.id == claims.sid && s.jti == claims.jti);
        if let Some(session) = own {
            self.store
                .delete_sessions(&claims.username, Some(session.id))
                .await?;
        }
        Ok(Some((claims.username, claims.jti)))
    }

    /// Another node of the cluster revoked token `jti`.
    pub fn revoked_elsewhere(&self, jti: &str) {
        if let Ok(mut revoked) = self.revoked.lock() {
            revoked.insert(jti.to_owned());
        }
    }

    /// Reads the revoked tokens from the store again (after this node was away from it).
    pub async fn reload_revoked(&self) -> Result<(), StoreError> {
        let now = chrono::Utc::now();
        let stored = self.store.revoked_tokens(now).await?;
        if let Ok(mut revoked) = self.revoked.lock() {
            revoked.extend(stored);
        }
        Ok(())
    }

    /// Validates a bearer token: signature, expiry, not revoked, that its user still exists
    /// and that its session is still kept; returns the user and what the token may do (an
    /// API token may do everything its user may). One longer than any rportd issues is
    /// refused unread.
    pub async fn check_token(
        &self,
        token: &str,
        used: &SessionUse<'_>,
    ) -> Result<Option<(AuthUser, TokenScope)>, StoreError> {
        if token.len() > crate::domain::bounded::MAX_TOKEN_LEN {
            return Ok(None);
        }
        if let Some(api_token) = api_token_part(token) {
            let user = self.check_api_token(api_token, None).await?;
            return Ok(user.map(|user| (user, TokenScope::Full)));
        }
        let Some(claims) = self.verified_claims(token) else {
            return Ok(None);
        };
        let Some(scope) = TokenScope::from_claim(&claims.scope) else {
            return Ok(None);
        };
        let Some((user, stamp)) = self.credential_stamp(&claims.username).await? else {
            return Ok(None);
        };
        // An expired password ends the sessions made with it, as in RPort.
        let valid = bool::from(stamp.as_bytes().ct_eq(claims.pw.as_bytes()));
        if !valid || user.password_expired {
            return Ok(None);
        }
        if !self.session_in_use(&claims.jti, used).await? {
            return Ok(None);
        }
        let user = AuthUser {
            login_session: Some(claims.jti),
            ..user
        };
        Ok(Some((user, scope)))
    }

    /// Records a use of the session of token `jti` (at most every [`TOUCH_EVERY`] per
    /// node); false when the store no longer keeps the session.
    async fn session_in_use(&self, jti: &str, used: &SessionUse<'_>) -> Result<bool, StoreError> {
        let fresh = self.touched.lock().is_ok_and(|touched| {
            touched
                .get(jti)
                .is_some_and(|at| at.elapsed() < TOUCH_EVERY)
        });
        if fresh {
            return Ok(true);
        }
        let user_agent = bounded_user_agent(used.user_agent);
        let ip = used.ip.to_string();
        let kept = self
            .store
            .touch_session(jti, chrono::Utc::now(), &user_agent, &ip)
            .await?;
        if let Ok(mut touched) = self.touched.lock() {
            touched.retain(|_, at| at.elapsed() < TOUCH_EVERY);
            if kept {
                touched.insert(jti.to_owned(), Instant::now());
            }
        }
        Ok(kept)
    }

    /// Checks an API token sent as the password of HTTP basic auth (as RPort's scripts
    /// send it): it must be `username`'s. `None` when `password` is not one of its API
    /// tokens, which the caller then checks as a password.
    pub async fn check_api_token_of(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Option<AuthUser>, StoreError> {
        if password.len() > crate::domain::bounded::MAX_TOKEN_LEN {
            return Ok(None);
        }
        match api_token_part(password) {
            Some(api_token) => self.check_api_token(api_token, Some(username)).await,
            None => Ok(None),
        }
    }

    /// Makes an API token for `user` with one of [`TOKEN_SCOPES`]; returns its record and,
    /// once, the token itself: RPort's `<prefix>_<uuid>`.
    pub async fn create_api_token(
        &self,
        user: &AuthUser,
        name: &str,
        scope: &str,
        expires_at: Option<chrono::DateTime<chrono::Utc>>,
        project: Option<String>,
    ) -> Result<(ApiTokenRecord, String), StoreError> {
        // The thread's generator is not `Send`: it must be gone before the first await.
        let id: String = {
            let mut rng = rand::rng();
            (0..TOKEN_PREFIX_LEN)
                .map(|_| char::from(rng.sample(rand::distr::Alphanumeric)))
                .collect()
        };
        let secret = uuid::Uuid::new_v4().to_string();
        let record = ApiTokenRecord {
            id: id.clone(),
            username: user.username.clone(),
            name: name.to_owned(),
            scope: scope.to_owned(),
            project,
            hash: hex::encode(Sha256::digest(secret.as_bytes())),
            created_at: chrono::Utc::now(),
            expires_at,
            last_used_at: None,
        };
        self.store.insert_api_token(&record).await?;
        Ok((record, format!("{id}_{secret}")))
    }

    /// Checks `<id>_<secret>` of an API token; with `owner`, only that user's.
    async fn check_api_token(
        &self,
        api_token: &str,
        owner: Option<&str>,
    ) -> Result<Option<AuthUser>, StoreError> {
        let Some((id, secret)) = api_token.split_once('_') else {
            return Ok(None);
        };
        let Some(record) = self.store.get_api_token(id).await? else {
            return Ok(None);
        };
        if owner.is_some_and(|owner| owner != record.username) {
            return Ok(None);
        }
        let presented = hex::encode(Sha256::digest(secret.as_bytes()));
        if !bool::from(presented.as_bytes().ct_eq(record.hash.as_bytes())) {
            return Ok(None);
        }
        let now = chrono::Utc::now();
        if record.expires_at.is_some_and(|at| at <= now) {
            return Ok(None);
        }
        let Some(mut user) = self.user(&record.username).await? else {
            return Ok(None);
        };
        if user.password_expired {
            return Ok(None);
        }
        let stale = record
            .last_used_at
            .is_none_or(|at| (now - at).to_std().unwrap_or_default() >= TOUCH_EVERY);
        if stale && let Err(err) = self.store.touch_api_token(id, now).await {
            tracing::warn!("recording API token use: {err}");
        }
        user.read_only = record.scope == "read";
        user.clients_auth_only = record.scope == "clients-auth";
        user.project = record.project;
        user.api_token = true;
        Ok(Some(user))
    }
}

/// The longest `User-Agent` a session keeps.
const MAX_USER_AGENT_LEN: usize = 256;

fn bounded_user_agent(user_agent: &str) -> String {
    let mut end = user_agent.len().min(MAX_USER_AGENT_LEN);
    while !user_agent.is_char_boundary(end) {
        end -= 1;
    }
    user_agent[..end].to_owned()
}

/// The `<id>_<secret>` of an API token: RPort's form (`<prefix>_<secret>`, the prefix of
/// [`TOKEN_PREFIX_LEN`] letters and digits), or `rpt_<id>_<secret>`. A login's token (a
/// JWT, with dots) is none.
fn api_token_part(token: &str) -> Option<&str> {
    if let Some(rest) = token.strip_prefix(API_TOKEN_PREFIX) {
        return Some(rest);
    }
    let (prefix, secret) = token.split_once('_')?;
    let is_rport_form = prefix.len() == TOKEN_PREFIX_LEN
        && prefix.bytes().all(|b| b.is_ascii_alphanumeric())
        && !secret.is_empty()
        && !secret.contains('.');
    is_rport_form.then_some(token)
}

#[cfg(test)]
mod tests {
    use super::api_token_part;

    #[test]
    fn api_tokens_are_told_from_login_tokens_and_passwords() {
        let rport = "AbCd1234_5f0c6f4e-58c5-4b8e-9a55-2b3f4c1d2e3f";
        assert_eq!(api_token_part(rport), Some(rport));
        assert_eq!(
            api_token_part("rpt_0011aabb_secret"),
            Some("0011aabb_secret")
        );
        for not_a_token in [
            "eyJhbGciOiJIUzI1NiJ9.eyJ1c2VybmFtZSI6ImEifQ.c2ln",
            "correct horse battery staple",
            "short_secret",
            "AbCd1234_",
            "AbCd-234_secret",
        ] {
            assert_eq!(api_token_part(not_a_token), None, "{not_a_token}");
        }
    }
}
