//! What a connection knows about its client, shared by its requests: the address, the
//! listener it came through (its name picks the addresses Metadata answers with; its protocol
//! says whether SASL must come first) and the principal it acts as.

use std::cell::RefCell;
use std::rc::Rc;

use crate::config::SecurityProtocol;
use crate::security::Principal;

/// One client listener as its connections see it.
#[derive(Debug)]
pub struct ListenerContext {
    pub name: String,
    pub protocol: SecurityProtocol,
}

pub struct Session {
    /// The client's address as Kafka reports it in groups (`/127.0.0.1`).
    pub client_host: Rc<str>,
    pub listener: Rc<ListenerContext>,
    principal: RefCell<Principal>,
}

impl Session {
    pub fn new(client_host: Rc<str>, listener: Rc<ListenerContext>, principal: Principal) -> Self {
        Session {
            client_host,
            listener,
            principal: RefCell::new(principal),
        }
    }

    pub fn principal(&self) -> Principal {
        self.principal.borrow().clone()
    }
}
