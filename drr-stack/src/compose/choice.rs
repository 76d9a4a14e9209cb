//! Which image the compose services run, and whether it holds the Postgres
//! version the spec pins.
//!
//! `DRR_IMAGE` when set; else the spec's image when it is on this machine;
//! else the image `cargo xtask image` builds, when that is (no registry can
//! be reached from many machines drr runs on); else the spec's, for `up` to
//! pull. The spec's default image pins a minor version
//! (`postgres:15.15-bookworm`), while the local image holds whatever
//! Debian packaged on the day it was built: when `up` falls back to it and
//! the two differ, the choice carries a warning that says so and how to
//! run the pinned one.

use anyhow::Result;

use super::image;
use crate::render::compose::IMAGE_ENV;
use crate::spec::StackSpec;

/// What the engine knows about images; [`Engine`] asks it.
pub trait Images {
    /// Whether `image` is on this machine.
    fn exists(&self, image: &str) -> Result<bool>;

    /// The server package version `image` records, if any
    /// ([`image::VERSION_LABEL`]).
    fn package_version(&self, image: &str) -> Result<Option<String>>;
}

/// The Docker engine.
#[derive(Debug, Clone, Copy)]
pub struct Engine;

impl Images for Engine {
    fn exists(&self, image: &str) -> Result<bool> {
        image::exists(image)
    }

    fn package_version(&self, image: &str) -> Result<Option<String>> {
        image::package_version(image)
    }
}

/// The image the services run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageChoice {
    /// Its reference.
    pub image: String,
    /// Whether it is on this machine (otherwise `up` pulls it).
    pub here: bool,
    /// Set when it runs another Postgres version than the spec pins.
    pub warning: Option<String>,
}

/// The image `up` runs for `spec` on this machine (see the module docs).
pub fn for_spec(spec: &StackSpec) -> Result<ImageChoice> {
    let env = std::env::var(IMAGE_ENV).ok();
    choose(spec, env.as_deref(), &Engine)
}

/// Chooses the image for `spec` (see the module docs); `env_image` is
/// `DRR_IMAGE`.
pub fn choose(
    spec: &StackSpec,
    env_image: Option<&str>,
    engine: &impl Images,
) -> Result<ImageChoice> {
    let choice = |image: &str, here: bool| ImageChoice {
        image: image.to_owned(),
        here,
        warning: None,
    };
    if let Some(image) = env_image.map(str::trim).filter(|i| !i.is_empty()) {
        return Ok(choice(image, engine.exists(image)?));
    }
    if engine.exists(&spec.image)? {
        return Ok(choice(&spec.image, true));
    }
    let local = image::local_tag(spec.postgres_major);
    if engine.exists(&local)? {
        let recorded = engine.package_version(&local)?;
        return Ok(ImageChoice {
            warning: mismatch(spec, &local, recorded.as_deref()),
            ..choice(&local, true)
        });
    }
    Ok(choice(&spec.image, false))
}

/// A warning when the spec's image pins a minor version that `local`
/// (recording `package`, the server package version) does not hold.
pub fn mismatch(spec: &StackSpec, local: &str, package: Option<&str>) -> Option<String> {
    let pinned = pinned_version(&spec.image)?;
    let Some(package) = package else {
        return Some(format!(
            "the spec pins Postgres {pinned} ({}), but {local} records no server version (an \
             older drr built it); run `cargo xtask image` to build it again",
            spec.image
        ));
    };
    let held = image::upstream(package).unwrap_or(package);
    (held != pinned).then(|| {
        format!(
            "the spec pins Postgres {pinned} ({}), but {local} holds {held} (postgresql-{} \
             {package}), so the nodes run {held}; to run {pinned}, load {} into the engine; \
             to run {held} on purpose, set `.image(\"{}\")` in the spec",
            spec.image,
            spec.postgres_major,
            spec.image,
            image::version_tag(spec.postgres_major, package)
        )
    })
}

/// The `major.minor` an image reference's tag pins: `15.15` of
/// `postgres:15.15-bookworm` or `drr/postgres:15.15`; `None` for a tag
/// without a minor (`postgres:15`), no tag, or a digest.
pub fn pinned_version(image: &str) -> Option<&str> {
    if image.contains('@') {
        return None;
    }
    let (_, tag) = image.rsplit_once(':')?;
    if tag.contains('/') {
        // `registry:5000/postgres`: a port, not a tag.
        return None;
    }
    let version = tag.split('-').next()?;
    let parts: Vec<&str> = version.split('.').collect();
    let numeric = |p: &&str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    (parts.len() == 2 && parts.iter().all(numeric)).then_some(version)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::spec::default_spec;

    /// Images on an imagined machine, with their recorded versions.
    struct Machine(BTreeMap<&'static str, Option<&'static str>>);

    impl Images for Machine {
        fn exists(&self, image: &str) -> Result<bool> {
            Ok(self.0.contains_key(image))
        }

        fn package_version(&self, image: &str) -> Result<Option<String>> {
            Ok(self.0.get(image).copied().flatten().map(str::to_owned))
        }
    }

    #[test]
    fn tags_pin_a_minor_version_or_none() {
        assert_eq!(pinned_version("postgres:15.15-bookworm"), Some("15.15"));
        assert_eq!(pinned_version("drr/postgres:15.18"), Some("15.18"));
        assert_eq!(pinned_version("registry:5000/pg:15.2"), Some("15.2"));
        for none in [
            "postgres:15",
            "postgres",
            "registry:5000/postgres",
            "postgres:latest",
            "postgres:15.15@sha256:abcd",
            "postgres:15.1.2",
        ] {
            assert_eq!(pinned_version(none), None, "{none}");
        }
    }

    #[test]
    fn the_local_fallback_warns_when_it_holds_another_minor() {
        let spec = default_spec();
        assert_eq!(spec.image, "postgres:15.15-bookworm");
        let machine = Machine([("drr/postgres:15", Some("15.18-0+deb12u1"))].into());
        let choice = choose(&spec, None, &machine).unwrap();
        assert_eq!(choice.image, "drr/postgres:15");
        assert!(choice.here);
        let warning = choice.warning.expect("a warning");
        assert!(
            warning.contains("pins Postgres 15.15 (postgres:15.15-bookworm)")
                && warning.contains("holds 15.18 (postgresql-15 15.18-0+deb12u1)")
                && warning.contains(".image(\"drr/postgres:15.18\")"),
            "{warning}"
        );

        let same = Machine([("drr/postgres:15", Some("15.15-0+deb12u1"))].into());
        assert_eq!(choose(&spec, None, &same).unwrap().warning, None);
        let unlabelled = Machine([("drr/postgres:15", None)].into());
        let warning = choose(&spec, None, &unlabelled).unwrap().warning.unwrap();
        assert!(warning.contains("records no server version"), "{warning}");
    }

    #[test]
    fn the_spec_image_or_drr_image_wins_without_a_warning() {
        let spec = default_spec();
        let machine = Machine(
            [
                ("drr/postgres:15", Some("15.18-0+deb12u1")),
                ("postgres:15.15-bookworm", None),
            ]
            .into(),
        );
        let choice = choose(&spec, None, &machine).unwrap();
        assert_eq!(
            (choice.image.as_str(), choice.warning),
            ("postgres:15.15-bookworm", None)
        );
        let choice = choose(&spec, Some("mine:1"), &machine).unwrap();
        assert_eq!((choice.image.as_str(), choice.here), ("mine:1", false));
        let nothing = Machine(BTreeMap::new());
        let choice = choose(&spec, None, &nothing).unwrap();
        assert_eq!(
            (choice.image.as_str(), choice.here),
            ("postgres:15.15-bookworm", false)
        );
    }
}
