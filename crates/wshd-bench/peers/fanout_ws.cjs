// The Node `ws` (8.x) peer of `wshd-bench fanout`: `?role=sub` connections are subscribers,
// every message of a `?role=pub` connection is sent to every subscriber with ws's own
// broadcast loop (`client.send(data, { binary: isBinary })` per subscriber, as in ws's
// README), not echoed to the publisher. Single-threaded (Node's event loop).
//
// Usage: node fanout_ws.cjs <port> <node_modules dir holding ws>
'use strict';
const path = require('path');
const [port, modules] = process.argv.slice(2);
const { WebSocketServer, WebSocket } = require(path.join(modules, 'ws'));

const subscribers = new Set();
const wss = new WebSocketServer({ host: '127.0.0.1', port: Number(port), path: '/fanout', perMessageDeflate: false });

wss.on('connection', (ws, req) => {
  const role = new URL(req.url, 'http://localhost').searchParams.get('role');
  if (role === 'sub') {
    subscribers.add(ws);
    ws.on('close', () => subscribers.delete(ws));
  } else if (role === 'pub') {
    ws.on('message', (data, isBinary) => {
      for (const client of subscribers) {
        if (client.readyState === WebSocket.OPEN) {
          client.send(data, { binary: isBinary });
        }
      }
    });
  } else {
    ws.close(1008, 'role=sub or role=pub');
  }
  ws.on('error', () => {});
});
wss.on('listening', () => console.log(`fanout_ws listening on ${port}`));
