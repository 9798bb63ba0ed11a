import { featureNames } from '../../bluetooth/features.js';
import { ApiConnection } from '../../connection/connection.js';
import { withRecording } from '../../fixture-server/recorder.js';
import { type Command, flag, num, PROXY_OPTIONS, str, UsageError } from '../command.js';
import { table } from '../output.js';
import { sanitize } from '../single-proxy.js';

/** `esphome-ble info`: connect and print hello + device info. */
export const infoCommand: Command = {
  name: 'info',
  summary: 'Connect to one node and print its hello and device info',
  usage: 'esphome-ble info --host H [--port 6053] [--psk B64] [--password PW] [--json]',
  options: PROXY_OPTIONS,
  async run(args, { out, signal }) {
    const host = str(args, 'host');
    if (host === undefined) throw new UsageError('--host is required');
    const psk = str(args, 'psk') ?? process.env.ESPHOME_BLE_PSK;
    const connection = await ApiConnection.connect(
      withRecording({ host, port: num(args, 'port'), psk, password: str(args, 'password'), timeout: num(args, 'timeout'), signal }),
    );
    try {
      const { hello, deviceInfo } = connection;
      if (flag(args, 'json')) {
        out.json({ host, port: connection.port, encryption: connection.encrypted ? 'noise' : 'plaintext', hello, deviceInfo });
      } else {
        const rows: Array<[string, string]> = [
          ['name', hello.name],
          ['api', `${hello.apiVersionMajor}.${hello.apiVersionMinor}`],
          ['server', hello.serverInfo],
          ['encryption', connection.encrypted ? 'noise' : 'plaintext'],
          ['mac', deviceInfo.macAddress],
          ['esphome', deviceInfo.esphomeVersion],
          ['model', `${deviceInfo.model} (${deviceInfo.manufacturer})`],
          ['friendly name', deviceInfo.friendlyName],
          ['bluetooth mac', deviceInfo.bluetoothMacAddress || '-'],
          [
            'bluetooth',
            deviceInfo.bluetoothProxyFeatureFlags === 0
              ? 'not a proxy'
              : `0x${deviceInfo.bluetoothProxyFeatureFlags.toString(16)} ${featureNames(deviceInfo.bluetoothProxyFeatureFlags).join(', ')}`,
          ],
        ];
        // Every value comes from the device: no control characters reach the terminal.
        out.line(
          table(
            ['field', 'value'],
            rows.map(([field, value]) => [field, sanitize(value)]),
          ),
        );
      }
    } finally {
      await connection.close();
    }
    return 0;
  },
};
