// The fuzz targets of `npm run fuzz`, with their share of the time budget (weight).
import { adBatch, adParser, noiseFrame, noiseHandshake, plaintextFrame } from './targets-decoders.mjs';
import { relayRequests, relayRequestsRestricted } from './targets-relay.mjs';
import { clientMessages, serverRequests, serverSocket } from './targets-sessions.mjs';

/** Every target, in run order. */
export const TARGETS = [
  { ...plaintextFrame, weight: 2 },
  { ...noiseFrame, weight: 2 },
  { ...noiseHandshake, weight: 1 },
  { ...adBatch, weight: 2 },
  { ...adParser, weight: 2 },
  { ...clientMessages, weight: 3 },
  { ...serverRequests, weight: 3 },
  { ...serverSocket, weight: 1 },
  { ...relayRequests, weight: 2 },
  { ...relayRequestsRestricted, weight: 1 },
];
