// The far end of a tagged switch port for a QEMU guest: routers on 802.1Q VLANs that answer ARP and
// ping, reached through QEMU's `-netdev socket,udp=...` (one Ethernet frame per UDP datagram). Put on
// the same QEMU hub as the guest's NICs (`-netdev hubport`), it sees every frame they send.
// QEMU's user networking drops tagged frames, so this is what lets a test prove that traffic leaves
// the guest with the right VLAN tag, through the right gateway, and that tagged answers come back.
//
//   const peer = await startVlanPeer([{ vid: 100, ip: '192.0.2.1', mac: '02:00:00:00:64:01' }]);
//   qemu ... -netdev socket,id=sw,udp=127.0.0.1:<peer.port>,localaddr=127.0.0.1:<free port>
//            -netdev hubport,id=swp,hubid=0,netdev=sw
//
// A router answers ARP for its own address on its own VLAN only, and answers every ICMP echo request
// sent to its MAC on that VLAN, whatever the destination address: a gateway with the whole routed
// network behind it. Each answered echo is recorded with the VLAN, the router and the addresses.
// Untagged frames are left alone (they are the user network's).
import dgram from 'node:dgram';

export interface Router {
  vid: number;
  ip: string;
  mac: string;
}

export interface Echo {
  vid: number;
  router: string;
  srcMac: string;
  src: string;
  dst: string;
}

export interface VlanPeer {
  port: number;
  /** Echo requests answered so far. */
  echoes(): Echo[];
  /** Every tagged frame seen: VLAN id and source MAC. */
  tagged(): Array<{ vid: number; srcMac: string }>;
  close(): Promise<void>;
}

const TPID_8021Q = 0x8100;
const ETH_ARP = 0x0806;
const ETH_IPV4 = 0x0800;

const macText = (b: Buffer, at: number): string => [...b.subarray(at, at + 6)].map((x) => x.toString(16).padStart(2, '0')).join(':');
const macBytes = (mac: string): Buffer => Buffer.from(mac.split(':').map((x) => parseInt(x, 16)));
const ipText = (b: Buffer, at: number): string => [...b.subarray(at, at + 4)].join('.');
const ipBytes = (ip: string): Buffer => Buffer.from(ip.split('.').map(Number));

/** Internet checksum (RFC 1071) of a buffer whose checksum field is zero. */
function checksum(b: Buffer): number {
  let sum = 0;
  for (let i = 0; i + 1 < b.length; i += 2) sum += b.readUInt16BE(i);
  if (b.length % 2) sum += b[b.length - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** A tagged Ethernet frame: destination, source, 802.1Q tag with the VLAN id, ethertype, payload. */
function tagged(dst: Buffer, src: Buffer, vid: number, ethertype: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(18);
  dst.copy(head, 0);
  src.copy(head, 6);
  head.writeUInt16BE(TPID_8021Q, 12);
  head.writeUInt16BE(vid & 0xfff, 14);
  head.writeUInt16BE(ethertype, 16);
  const frame = Buffer.concat([head, payload]);
  // Ethernet's minimum frame (60 bytes before the FCS): short ARP answers are padded with zeros.
  return frame.length >= 60 ? frame : Buffer.concat([frame, Buffer.alloc(60 - frame.length)]);
}

function arpReply(router: Router, arp: Buffer): Buffer {
  const out = Buffer.from(arp.subarray(0, 28));
  out.writeUInt16BE(2, 6); // reply
  macBytes(router.mac).copy(out, 8);
  ipBytes(router.ip).copy(out, 14);
  arp.copy(out, 18, 8, 14); // target hardware address: the asker
  arp.copy(out, 24, 14, 18); // target protocol address: the asker
  return out;
}

function echoReply(ip: Buffer): Buffer | undefined {
  const ihl = (ip[0]! & 0x0f) * 4;
  const total = ip.readUInt16BE(2);
  if (ip[9] !== 1 || ip[ihl] !== 8 || total > ip.length) return undefined; // ICMP echo request only
  const out = Buffer.from(ip.subarray(0, total));
  ip.copy(out, 12, 16, 20); // source ← destination
  ip.copy(out, 16, 12, 16); // destination ← source
  out[8] = 64;
  out.writeUInt16BE(0, 10);
  out.writeUInt16BE(checksum(out.subarray(0, ihl)), 10);
  out[ihl] = 0; // echo reply
  out.writeUInt16BE(0, ihl + 2);
  out.writeUInt16BE(checksum(out.subarray(ihl)), ihl + 2);
  return out;
}

export async function startVlanPeer(routers: Router[]): Promise<VlanPeer> {
  const sock = dgram.createSocket('udp4');
  const echoes: Echo[] = [];
  const seen: Array<{ vid: number; srcMac: string }> = [];

  sock.on('message', (frame, from) => {
    if (frame.length < 18 || frame.readUInt16BE(12) !== TPID_8021Q) return;
    const vid = frame.readUInt16BE(14) & 0xfff;
    const ethertype = frame.readUInt16BE(16);
    const payload = frame.subarray(18);
    const srcMac = macText(frame, 6);
    seen.push({ vid, srcMac });
    const onVlan = routers.filter((r) => r.vid === vid);
    let reply: Buffer | undefined;
    let router: Router | undefined;
    if (ethertype === ETH_ARP && payload.length >= 28 && payload.readUInt16BE(6) === 1) {
      router = onVlan.find((r) => r.ip === ipText(payload, 24));
      if (router) reply = tagged(frame.subarray(6, 12), macBytes(router.mac), vid, ETH_ARP, arpReply(router, payload));
    } else if (ethertype === ETH_IPV4 && payload.length >= 28) {
      router = onVlan.find((r) => r.mac === macText(frame, 0));
      const answer = router && echoReply(payload);
      if (router && answer) {
        echoes.push({ vid, router: router.ip, srcMac, src: ipText(payload, 12), dst: ipText(payload, 16) });
        reply = tagged(frame.subarray(6, 12), macBytes(router.mac), vid, ETH_IPV4, answer);
      }
    }
    if (reply) sock.send(reply, from.port, from.address);
  });

  await new Promise<void>((resolve, reject) => {
    sock.once('error', reject);
    sock.bind(0, '127.0.0.1', () => resolve());
  });
  return {
    port: sock.address().port,
    echoes: () => [...echoes],
    tagged: () => [...seen],
    close: () => new Promise<void>((resolve) => sock.close(() => resolve())),
  };
}
