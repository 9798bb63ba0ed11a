import type { ProxyDiagnostics } from '../pool/proxy-health.js';
import type { GatewayTopics } from './topics.js';

/** One retained Home Assistant MQTT discovery message. */
export interface DiscoveryMessage {
  readonly topic: string;
  readonly payload: string;
}

/** Home Assistant's default discovery prefix. */
export const DEFAULT_DISCOVERY_PREFIX = 'homeassistant';

/** Home Assistant allows only these characters in the node and object ids of a discovery topic. */
function idOf(text: string): string {
  return text.replace(/[^a-zA-Z0-9_-]/g, '_');
}

/**
 * The discovery messages for one proxy (Home Assistant's `<prefix>/<component>/<node_id>/<object_id>/config`): a
 * connectivity binary sensor, free slots and advertisements per second, grouped as one device per proxy and
 * available while the gateway's LWT says `online`.
 */
export function proxyDiscovery(prefix: string, gateway: string, topics: GatewayTopics, proxy: ProxyDiagnostics): DiscoveryMessage[] {
  const device = {
    identifiers: [`esphome-ble_${gateway}_${proxy.id}`],
    name: `${proxy.name ?? proxy.id} Bluetooth proxy`,
    manufacturer: 'ESPHome',
    model: 'Bluetooth proxy',
    ...(proxy.esphomeVersion === undefined ? {} : { sw_version: proxy.esphomeVersion }),
  };
  const common = { availability_topic: topics.lwt, payload_available: 'online', payload_not_available: 'offline', device };
  const entities: Array<{ component: (typeof ENTITIES)[number][0]; key: string; config: Record<string, unknown> }> = [
    {
      component: 'binary_sensor',
      key: 'online',
      config: {
        name: 'Online',
        state_topic: topics.proxy(proxy.id, 'online'),
        payload_on: 'online',
        payload_off: 'offline',
        device_class: 'connectivity',
      },
    },
    {
      component: 'sensor',
      key: 'free_slots',
      config: {
        name: 'Free connection slots',
        state_topic: topics.proxy(proxy.id, 'slots'),
        value_template: '{{ value_json.free }}',
        state_class: 'measurement',
        icon: 'mdi:bluetooth-connect',
      },
    },
    {
      component: 'sensor',
      key: 'ads_per_second',
      config: {
        name: 'Advertisements per second',
        state_topic: topics.proxy(proxy.id, 'stats'),
        value_template: '{{ value_json.adsPerSecond }}',
        unit_of_measurement: 'ads/s',
        state_class: 'measurement',
        icon: 'mdi:bluetooth-audio',
      },
    },
  ];
  return entities.map(({ component, key, config }) => ({
    topic: discoveryTopic(prefix, gateway, proxy.id, component, key),
    payload: JSON.stringify({ ...config, unique_id: `esphome-ble_${gateway}_${proxy.id}_${key}`, ...common }),
  }));
}

/** The entities each proxy gets: component and key. */
const ENTITIES = [
  ['binary_sensor', 'online'],
  ['sensor', 'free_slots'],
  ['sensor', 'ads_per_second'],
] as const;

/** The discovery config topics of one proxy (publishing an empty retained payload on them removes the entities). */
export function proxyDiscoveryTopics(prefix: string, gateway: string, proxyId: string): string[] {
  return ENTITIES.map(([component, key]) => discoveryTopic(prefix, gateway, proxyId, component, key));
}

function discoveryTopic(prefix: string, gateway: string, proxyId: string, component: string, key: string): string {
  return `${prefix}/${component}/${idOf(`esphome_ble_${gateway}`)}/${idOf(proxyId)}_${key}/config`;
}
