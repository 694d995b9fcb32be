//! `clawline token [--rotate]`.

use std::process::ExitCode;

use anyhow::{Result, bail};
use clawline_core::secret::SecretString;

use crate::cli::TokenArgs;
use crate::setup::{self, Paths, TOKEN_SECRET};

pub async fn run(paths: &Paths, args: TokenArgs) -> Result<ExitCode> {
    setup::init_state(paths)?;
    let (assembled, _) = setup::assemble(paths)?;
    if assembled.config.gateway.token.is_some() {
        if args.rotate {
            bail!("the token is set in {} (gateway.auth.token); change it there", paths.config_file.display());
        }
        eprintln!("(from gateway.auth.token in {})", paths.config_file.display());
    }
    if args.rotate {
        let token = SecretString::new(clawline_store::random_hex(24));
        assembled.store.put_secret(TOKEN_SECRET, &token, &assembled.key).await?;
        println!("{}", token.expose());
        eprintln!("New token stored. Restart the gateway to use it; the old token stops working then.");
        return Ok(ExitCode::SUCCESS);
    }
    match setup::gateway_token(&assembled.config, &assembled.store, &assembled.key, true).await? {
        Some((token, created)) => {
            println!("{}", token.expose());
            if created {
                eprintln!("(generated now and stored encrypted)");
            }
            Ok(ExitCode::SUCCESS)
        }
        None => bail!("no token could be created"),
    }
}
