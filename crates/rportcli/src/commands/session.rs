//! `init` (log in, save the token), `me`, `status` and `version`.

use serde_json::json;

use super::{CommandError, Context, data};
use crate::api::ApiClient;
use crate::cli::InitArgs;
use crate::config::{
    self, ConfigFile, Credentials, DEFAULT_TOKEN_LIFETIME_SECONDS, SESSION_VALIDITY_ENV, Secret,
    process_env,
};
use crate::output;
use crate::terminal;

/// A value from the flag, else the environment, else asked (when allowed).
fn value_or_prompt(
    given: Option<String>,
    from_env: Option<String>,
    may_ask: bool,
    question: &str,
    flag: &str,
) -> Result<String, CommandError> {
    if let Some(value) = given.or(from_env).filter(|v| !v.is_empty()) {
        return Ok(value);
    }
    if may_ask {
        let answer = terminal::prompt_line(question)
            .map_err(|e| CommandError::Failed(format!("reading the answer: {e}")))?;
        if !answer.is_empty() {
            return Ok(answer);
        }
    }
    Err(CommandError::Usage(format!("missing {flag}")))
}

pub fn init(context: &Context, args: &InitArgs) -> Result<(), CommandError> {
    let path = config::config_path(&process_env)?;
    if args.delete {
        return logout(context, &path);
    }
    if config::env_api_token(&process_env).is_some() {
        return Err(config::ConfigError::InitWithApiToken.into());
    }
    if args.oauth {
        return Err(CommandError::Usage(
            "rportd has no OAuth login: use -l USER (and -p PASSWORD or the prompt)".into(),
        ));
    }
    let may_ask = !args.no_prompt && terminal::interactive();
    let server_url = value_or_prompt(
        args.api_url.clone(),
        config::env_server_url(&process_env),
        may_ask,
        "Server address of rportd's API (e.g. https://rport.example.com): ",
        "the server URL: -s URL (or RPORT_SERVER_URL)",
    )?;
    let user = value_or_prompt(
        args.api_user.clone(),
        config::env_user(&process_env),
        may_ask,
        "User: ",
        "the user: -l USER (or RPORT_USER)",
    )?;
    let password = match args
        .api_password
        .clone()
        .map(Secret::new)
        .or_else(|| config::env_password(&process_env))
    {
        Some(password) => password,
        None if may_ask => Secret::new(
            terminal::prompt_secret("Password: ")
                .map_err(|e| CommandError::Failed(format!("reading the password: {e}")))?,
        ),
        None => {
            return Err(CommandError::Usage(
                "missing the password: -p PASSWORD (or RPORT_PASSWORD), or run init on a \
                 terminal to be asked"
                    .into(),
            ));
        }
    };
    let lifetime = std::env::var(SESSION_VALIDITY_ENV)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(DEFAULT_TOKEN_LIFETIME_SECONDS);
    let credentials = Credentials::Basic {
        user: user.clone(),
        password,
    };
    let api = ApiClient::new(
        &server_url,
        Some(&credentials),
        "-l and -p",
        context.timeout,
        context.verbose,
    )?;
    let token = login(&api, &user, lifetime, may_ask)?;
    config::save_file(
        &path,
        &ConfigFile {
            server: server_url.clone(),
            token,
        },
    )?;
    println!(
        "Logged in to {server_url} as {user}; the token is saved in {}",
        path.display()
    );
    Ok(())
}

/// `GET /api/v1/login` with the password; with TOTP on, the code too.
pub fn login(
    api: &ApiClient,
    user: &str,
    lifetime: u64,
    may_ask: bool,
) -> Result<Secret, CommandError> {
    let answer = data(api.get("/api/v1/login", &[("token-lifetime", lifetime.to_string())])?);
    let token = answer["token"].as_str().unwrap_or_default().to_owned();
    if token.is_empty() {
        return Err(CommandError::Failed(
            "rportd answered the login without a token".into(),
        ));
    }
    let method = answer["two_fa"]["delivery_method"]
        .as_str()
        .unwrap_or_default();
    if method.is_empty() {
        return Ok(Secret::new(token));
    }
    if !may_ask {
        return Err(CommandError::Usage(format!(
            "the server asks for a second factor ({method}): run `rportcli init` on a terminal, \
             or use RPORT_API_USER and RPORT_API_TOKEN"
        )));
    }
    let code = terminal::prompt_line("Code from your authenticator app: ")
        .map_err(|e| CommandError::Failed(format!("reading the code: {e}")))?;
    let second = api.with_credentials(
        &Credentials::Bearer(Secret::new(token)),
        "the login's second-factor token",
    );
    let verified = data(second.post(
        &format!("/api/v1/verify-2fa?token-lifetime={lifetime}"),
        &json!({"username": user, "token": code}),
    )?);
    verified["token"]
        .as_str()
        .filter(|t| !t.is_empty())
        .map(Secret::new)
        .ok_or_else(|| CommandError::Failed("rportd answered 2FA without a token".into()))
}

fn logout(context: &Context, path: &std::path::Path) -> Result<(), CommandError> {
    if let Ok(api) = context.api() {
        // The file goes whatever the server says: a token already expired is logged out too.
        if let Err(err) = api.delete("/api/v1/logout", &[]) {
            eprintln!("rportcli: the server did not end the session: {err}");
        }
    }
    config::delete_file(path)?;
    println!("Logged out; {} deleted", path.display());
    Ok(())
}

pub fn me(context: &Context) -> Result<(), CommandError> {
    let me = data(context.api()?.get("/api/v1/me", &[])?);
    context.print(&me, |width| {
        output::key_values(&output::object_pairs(&me), width)
    });
    Ok(())
}

pub fn status(context: &Context) -> Result<(), CommandError> {
    let status = data(context.api()?.get("/api/v1/status", &[])?);
    context.print(&status, |width| {
        output::key_values(&output::object_pairs(&status), width)
    });
    Ok(())
}

pub fn version(context: &Context) {
    let version = env!("CARGO_PKG_VERSION");
    let value =
        json!({"version": version, "arch": std::env::consts::ARCH, "os": std::env::consts::OS});
    match output::machine_text(context.format, &value) {
        Some(text) => print!("{text}"),
        None => println!(
            "Version: {version}\nArch       {}\nOS         {}",
            std::env::consts::ARCH,
            std::env::consts::OS
        ),
    }
}
