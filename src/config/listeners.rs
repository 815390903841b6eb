//! Client listeners and their security protocols, in Kafka's terms.
//!
//! - `listeners`: `NAME://host:port,...`. A listener named `CONTROLLER` carries node-to-node
//!   traffic (`Config::controller_listen`); every other one serves Kafka clients, each on its
//!   own port, all at once. A bare `host:port` is a listener named PLAINTEXT.
//! - `listener.security.protocol.map`: `NAME:PROTOCOL,...`, the protocol of each named listener
//!   (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL). A listener named after a protocol needs no
//!   entry, as in Kafka's default map.
//! - `advertised.listeners`: `NAME://host:port,...`, what Metadata tells a client that connected
//!   through listener NAME (Kafka answers each client with the addresses of its own listener, on
//!   every broker). A listener with no entry advertises its bind address, which must then be a
//!   concrete one; a bare `host:port` is the first client listener's.
//!
//! The setters record what they are given and `resolve` (run by each setter and by
//! `Config::finish`) fills in each listener's protocol and advertised address; a listener left
//! without a protocol is refused at start, never served as plaintext.

use std::net::SocketAddr;

/// A listener's security protocol (Kafka's `SecurityProtocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub const ALL: [SecurityProtocol; 4] = [
        SecurityProtocol::Plaintext,
        SecurityProtocol::Ssl,
        SecurityProtocol::SaslPlaintext,
        SecurityProtocol::SaslSsl,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    pub fn parse(name: &str) -> Option<SecurityProtocol> {
        let name = name.trim();
        Self::ALL
            .into_iter()
            .find(|protocol| protocol.name().eq_ignore_ascii_case(name))
    }

    /// The connection is TLS from its first byte.
    pub fn tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    /// Requests other than ApiVersions and the SASL exchange wait for authentication.
    pub fn sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

/// One client listener.
#[derive(Debug, Clone, PartialEq)]
pub struct Listener {
    /// Upper case, as Kafka compares listener names.
    pub name: String,
    pub address: SocketAddr,
    /// From `listener.security.protocol.map`, else the name itself; None until resolved.
    pub protocol: Option<SecurityProtocol>,
    /// `advertised.listeners`' entry for this name, else the bind address.
    pub advertised: Option<(String, u16)>,
}

/// What the three keys set, kept so each setter can re-resolve in any order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListenerSettings {
    pub listeners: Vec<Listener>,
    pub protocol_map: Vec<(String, SecurityProtocol)>,
    /// (listener name, host, port); name None: a bare `host:port` (the first listener).
    pub advertised: Vec<(Option<String>, String, u16)>,
}

impl ListenerSettings {
    pub fn new(address: SocketAddr) -> ListenerSettings {
        let mut settings = ListenerSettings {
            listeners: vec![Listener {
                name: "PLAINTEXT".to_string(),
                address,
                protocol: None,
                advertised: None,
            }],
            ..ListenerSettings::default()
        };
        settings.resolve();
        settings
    }

    /// Fills in each listener's protocol and advertised address from the settings.
    pub fn resolve(&mut self) {
        for (position, listener) in self.listeners.iter_mut().enumerate() {
            listener.protocol = self
                .protocol_map
                .iter()
                .find(|(name, _)| *name == listener.name)
                .map(|(_, protocol)| *protocol)
                .or_else(|| SecurityProtocol::parse(&listener.name));
            let explicit = self.advertised.iter().find(|(name, _, _)| match name {
                Some(name) => *name == listener.name,
                None => position == 0,
            });
            listener.advertised = Some(match explicit {
                Some((_, host, port)) => (
                    host.clone(),
                    if *port == 0 {
                        listener.address.port()
                    } else {
                        *port
                    },
                ),
                None => (listener.address.ip().to_string(), listener.address.port()),
            });
        }
    }

    /// Start-time checks: every listener has a protocol and an address clients can reach;
    /// every advertised name is a listener.
    pub fn check(&self) -> Result<(), (&'static str, String, String)> {
        for listener in &self.listeners {
            if listener.protocol.is_none() {
                return Err((
                    "listener.security.protocol.map",
                    listener.name.clone(),
                    format!(
                        "listener {} has no security protocol: add {}:PROTOCOL (PLAINTEXT, SSL, \
                         SASL_PLAINTEXT or SASL_SSL)",
                        listener.name, listener.name
                    ),
                ));
            }
            let (host, _) = listener.advertised.clone().unwrap_or_default();
            let unspecified = host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_unspecified());
            if unspecified {
                return Err((
                    "advertised.listeners",
                    format!("{}://{}", listener.name, listener.address),
                    "clients cannot connect to an unspecified address; name the host in \
                     advertised.listeners (or --advertise HOST:PORT)"
                        .to_string(),
                ));
            }
        }
        for (name, host, port) in &self.advertised {
            if let Some(name) = name {
                if !self.listeners.iter().any(|listener| listener.name == *name) {
                    return Err((
                        "advertised.listeners",
                        format!("{name}://{host}:{port}"),
                        format!("no listener is named {name}"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// `listeners`' client part, as written back.
    pub fn listeners_text(&self) -> String {
        self.listeners
            .iter()
            .map(|listener| format!("{}://{}", listener.name, listener.address))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn advertised_text(&self) -> String {
        self.listeners
            .iter()
            .map(|listener| {
                let (host, port) = listener.advertised.clone().unwrap_or_default();
                format!("{}://{host}:{port}", listener.name)
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The CONTROLLER listener's protocol: its `listener.security.protocol.map` entry, else
    /// PLAINTEXT (Kafka's default map has `CONTROLLER:PLAINTEXT`).
    pub fn controller_protocol(&self) -> SecurityProtocol {
        self.protocol_map
            .iter()
            .find(|(name, _)| name == "CONTROLLER")
            .map_or(SecurityProtocol::Plaintext, |(_, protocol)| *protocol)
    }

    pub fn protocol_map_text(&self) -> String {
        self.protocol_map
            .iter()
            .map(|(name, protocol)| format!("{name}:{}", protocol.name()))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// `listener.security.protocol.map`: `NAME:PROTOCOL,...`.
pub fn parse_protocol_map(value: &str) -> Result<Vec<(String, SecurityProtocol)>, String> {
    let mut map: Vec<(String, SecurityProtocol)> = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, protocol) = entry
            .split_once(':')
            .ok_or_else(|| format!("`{entry}`: expected NAME:PROTOCOL"))?;
        let name = name.trim().to_ascii_uppercase();
        let protocol = SecurityProtocol::parse(protocol).ok_or_else(|| {
            format!(
                "`{protocol}` is not a security protocol (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL)"
            )
        })?;
        if map.iter().any(|(known, _)| *known == name) {
            return Err(format!("listener {name} is mapped twice"));
        }
        map.push((name, protocol));
    }
    Ok(map)
}

/// `advertised.listeners`: `NAME://host:port,...` or one bare `host:port`.
pub fn parse_advertised(
    value: &str,
    parse_host_port: fn(&str) -> Result<(String, u16), String>,
) -> Result<Vec<(Option<String>, String, u16)>, String> {
    let mut advertised: Vec<(Option<String>, String, u16)> = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, address) = match entry.split_once("://") {
            Some((name, address)) => (Some(name.trim().to_ascii_uppercase()), address),
            None => (None, entry),
        };
        let (host, port) = parse_host_port(address)?;
        if advertised.iter().any(|(known, _, _)| *known == name) {
            return Err(format!(
                "listener {} is advertised twice",
                name.as_deref().unwrap_or("(bare host:port)")
            ));
        }
        advertised.push((name, host, port));
    }
    Ok(advertised)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(listeners: &[(&str, &str)]) -> ListenerSettings {
        let mut settings = ListenerSettings {
            listeners: listeners
                .iter()
                .map(|(name, address)| Listener {
                    name: name.to_string(),
                    address: address.parse().unwrap(),
                    protocol: None,
                    advertised: None,
                })
                .collect(),
            ..ListenerSettings::default()
        };
        settings.resolve();
        settings
    }

    #[test]
    fn protocols_come_from_the_map_or_the_name() {
        let mut settings = settings(&[
            ("SSL", "127.0.0.1:9093"),
            ("INTERNAL", "127.0.0.1:9094"),
            ("PLAINTEXT", "127.0.0.1:9092"),
        ]);
        assert_eq!(settings.listeners[0].protocol, Some(SecurityProtocol::Ssl));
        assert_eq!(settings.listeners[1].protocol, None);
        assert!(settings.check().is_err());
        settings.protocol_map = parse_protocol_map("internal:sasl_ssl").unwrap();
        settings.resolve();
        assert_eq!(
            settings.listeners[1].protocol,
            Some(SecurityProtocol::SaslSsl)
        );
        settings.check().unwrap();
        assert!(parse_protocol_map("A:TLS").is_err());
        assert!(parse_protocol_map("A:SSL,a:SSL").is_err());
    }

    #[test]
    fn advertised_addresses_per_listener() {
        let mut settings = settings(&[("PLAINTEXT", "0.0.0.0:9092"), ("SSL", "127.0.0.2:9093")]);
        assert!(settings.check().is_err(), "wildcard advertised");
        let host_port = |text: &str| {
            let (host, port) = text.rsplit_once(':').unwrap();
            Ok((host.to_string(), port.parse().unwrap()))
        };
        settings.advertised = parse_advertised("broker1.example:19092", host_port).unwrap();
        settings.resolve();
        settings.check().unwrap();
        assert_eq!(
            settings.listeners[0].advertised,
            Some(("broker1.example".to_string(), 19092))
        );
        assert_eq!(
            settings.listeners[1].advertised,
            Some(("127.0.0.2".to_string(), 9093))
        );
        settings.advertised = parse_advertised("NOPE://a:1", host_port).unwrap();
        settings.resolve();
        assert!(settings.check().is_err(), "unknown listener name");
    }
}
