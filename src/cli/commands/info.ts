import { featureNames } from '../../bluetooth/features.js';
import { type Command, flag, UsageError } from '../command.js';
import { connectNode } from '../connect-feedback.js';
import { jsonMac } from '../json-format.js';
import { NODE_OPTIONS } from '../option-groups.js';
import { table } from '../output.js';
import { hostOf, hostSecretsOf, sanitize, timeoutOf } from '../single-proxy.js';

/** `esphome-ble info`: connect and print hello + device info. */
export const infoCommand: Command = {
  name: 'info',
  summary: 'Connect to one node and print its hello and device info',
  usage: 'esphome-ble info --host host[:port] [options]',
  options: NODE_OPTIONS,
  help: [
    "Takes nothing from the node's other clients: Hello, device info and capabilities only.",
    '--json prints one object: {"host","port","encryption":"noise|plaintext","hello":{…},"deviceInfo":{…}}',
    '(deviceInfo.macAddress and bluetoothMacAddress as AA:BB:CC:DD:EE:FF).',
  ].join('\n'),
  examples: ['esphome-ble info --host 192.168.1.40', 'esphome-ble info --host 127.0.0.1:16053 --psk-file kitchen.key --json'],
  async run(args, ctx) {
    const { out, signal } = ctx;
    if (args.positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(args.positionals[0])}`);
    const { host, port } = hostOf(args)!;
    const connection = await connectNode(ctx, { host, port, ...hostSecretsOf(args), timeout: timeoutOf(args), signal });
    try {
      const { hello, deviceInfo } = connection;
      if (flag(args, 'json')) {
        out.json({
          host,
          port: connection.port,
          encryption: connection.encrypted ? 'noise' : 'plaintext',
          hello,
          deviceInfo: {
            ...deviceInfo,
            macAddress: jsonMac(deviceInfo.macAddress),
            bluetoothMacAddress: jsonMac(deviceInfo.bluetoothMacAddress),
          },
        });
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
