//! DHCPv4 messages: what the client sends, and the defensive parser of what servers reply.
