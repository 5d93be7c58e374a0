// A managed-streaming app that sends the wearer's view to a social platform
// as well, on the unmodified @mentra/sdk 2.1.29: it names the platform's
// RTMP ingest in restreamDestinations and reports the outputs' statuses the
// managed stream status carries.
import { AppServer, StreamType } from '@mentra/sdk';

class RestreamApp extends AppServer {
  async onSession(session) {
    session.subscribe(StreamType.MANAGED_STREAM_STATUS);
    const unsubscribe = session.camera.onManagedStreamStatus((status) => {
      console.log('Stream status:', status.status, status.message || '');
      if (status.outputs) {
        console.log('Outputs:', JSON.stringify(status.outputs.map(o => ({ url: o.url, name: o.name, status: o.status }))));
      }
    });
    try {
      const result = await session.camera.startManagedStream({
        restreamDestinations: [{ url: process.env.RESTREAM_URL, name: 'Live' }],
      });
      console.log('Stream request resolved:', result.hlsUrl);
    } catch (error) {
      console.log('Failed to start stream:', error.message);
    }
    this.addCleanupHandler(unsubscribe);
  }
}

new RestreamApp({
  packageName: process.env.PACKAGE_NAME ?? 'com.example.restream',
  apiKey: process.env.MENTRAOS_API_KEY,
  port: Number(process.env.PORT ?? '3000'),
}).start();
