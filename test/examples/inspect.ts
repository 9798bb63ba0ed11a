// #region readme
import { inspectProxies, type ProxyInspection } from 'esphome-ble';

/** Prints the slots and who holds each proxy's subscription, read beside Home Assistant without taking anything. */
async function printSlots(proxies: string[]): Promise<ProxyInspection[]> {
  // Only the slot query, which the firmware answers to any client: Home Assistant keeps its subscription.
  const inspections = await inspectProxies(proxies, { timeout: 5_000 });
  for (const p of inspections) {
    const i = p.inspection;
    const slots = i?.advertisementOnly ? 'advertisement-only' : i?.slots ? `${i.slots.free}/${i.slots.limit} free` : 'no slots';
    console.log(`${p.name ?? p.id}: ${p.online ? slots : `offline (${p.error?.message})`}`);
    if (i) console.log(`  subscription: ${i.subscriber.holder}${i.subscriber.sure ? '' : '?'} (${i.subscriber.evidence})`);
    for (const a of i?.allocations ?? []) console.log(`  ${a.mac} holds a slot (seen for ${a.heldMs} ms)`);
  }
  return inspections;
}

// #endregion readme

export { printSlots };
