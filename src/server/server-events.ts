/** Why a server closed a session on its own. */
export type SessionDropReason =
  /** More than the backlog's `closeAt` bytes waited for a client that does not read. */
  | 'backlog'
  /** Silent for 2.5 keep-alive intervals once authenticated (the firmware's 150 s). */
  | 'keepalive'
  /** Not authenticated (transport handshake, HelloRequest, password) within the connect deadline (the firmware's 60 s). */
  | 'handshakeTimeout'
  /** The listener was full and a newcomer took the place of this session, the oldest not authenticated (`evictUnauthenticated`). */
  | 'evicted'
  /** A frame or message the firmware would drop the connection for (too large, malformed, not allowed yet). */
  | 'protocol';

/** Something an API server did to protect itself; a CLI prints it, `--json` reports it. */
export type ApiServerEvent =
  | {
      type: 'sessionRefused';
      /** `address:port` of the peer. */
      remote: string;
      reason: 'maxConnections';
      /** The listener's limit, reached when the peer connected. */
      limit: number;
    }
  | {
      type: 'sessionDropped';
      remote: string;
      /** The client's HelloRequest text ('' before Hello); the peer's own words: sanitize before printing. */
      clientInfo: string;
      reason: SessionDropReason;
      /** Why, in words (limits and sizes; never a secret). */
      message: string;
      /** Bytes that were waiting for the client. */
      backlogBytes: number;
      /** Advertisement reports skipped for the client while it was behind. */
      droppedAdvertisements: number;
    };
