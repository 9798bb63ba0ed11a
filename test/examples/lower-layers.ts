// #region readme
import { ApiConnection, BluetoothProxy } from 'esphome-ble';

/** One proxy, no pool: e.g. `await firstNotification('192.168.1.40', 0xaabbccddeeff, '2a37')`. */
async function firstNotification(host: string, address: number, characteristic: string, port = 6053): Promise<Uint8Array | undefined> {
  const api = await ApiConnection.connect({ host, port, psk: process.env.ESPHOME_BLE_PSK });
  try {
    const proxy = await BluetoothProxy.attach(api); // becomes the proxy's Bluetooth subscriber
    let heard = 0;
    for await (const ad of proxy.advertisements({ highWaterMark: 1000, overflow: 'dropOldest' })) {
      console.log(ad.mac, ad.rssi, ad.localName, ad.manufacturerData);
      if (++heard === 5) break;
    }
    const link = await proxy.connect(address, { addressType: 1 });
    try {
      console.log(link.mac, (await link.getServices()).characteristics().length, 'characteristics');
      // A promise of an async iterable: it resolves once the notifications are switched on.
      for await (const value of await link.notifications(characteristic)) return value; // leaving the loop switches them off
      return undefined; // the link dropped first
    } finally {
      await link.disconnect();
    }
  } finally {
    await api.close();
  }
}

// #endregion readme

export { firstNotification };
