// A managed-streaming app as the RTMP streaming guide writes one, on the
// unmodified @mentra/sdk 2.1.29. It also says what stream the user already
// has (checkExistingStream) and when it is stopped, for the tests to see.
import { AppServer, StreamType } from '@mentra/sdk';

class ManagedStreamingApp extends AppServer {
  async onSession(session, sessionId, userId) {
    session.logger.info('Managed streaming app session started');

    const existing = await session.camera.checkExistingStream();
    console.log('Existing stream:', JSON.stringify(existing));

    session.subscribe(StreamType.MANAGED_STREAM_STATUS);

    // Listen before starting, as the guide says.
    const statusUnsubscribe = session.camera.onManagedStreamStatus((status) => {
      console.log('Stream status:', status.status, status.message || '');
      if (status.status === 'active') {
        console.log('HLS URL:', status.hlsUrl);
        console.log('DASH URL:', status.dashUrl);
        session.layouts.showTextWall('Stream is live! Share the URLs with viewers.');
      } else if (status.status === 'error') {
        console.error('Stream error:', status.message);
        session.layouts.showTextWall('Stream failed to start');
      }
    });

    try {
      const result = await session.camera.startManagedStream();
      console.log('Stream request resolved:', result.hlsUrl, result.dashUrl);
    } catch (error) {
      console.log('Failed to start stream:', error.message);
      session.layouts.showTextWall('Failed to start stream');
    }

    // "stop stream" said to the glasses stops it.
    const transcriptionUnsubscribe = session.events.onTranscription(async (data) => {
      if (!data.isFinal) return;
      const command = data.text.toLowerCase().trim();
      console.log('Heard:', command);
      if (command.includes('stop stream') || command.includes('end stream')) {
        await session.camera.stopManagedStream();
        session.layouts.showTextWall('Stream stopped');
      }
    });

    this.addCleanupHandler(statusUnsubscribe);
    this.addCleanupHandler(transcriptionUnsubscribe);
  }

  // When each session request arrives, before the SDK opens its socket
  // (for the tests; the SDK's own handling is unchanged).
  async handleSessionRequest(request, res) {
    console.log('Session request at', Date.now(), request.sessionId);
    return super.handleSessionRequest(request, res);
  }

  async onStop(sessionId, userId, reason) {
    console.log('Session stopped:', reason);
    await super.onStop(sessionId, userId, reason);
  }
}

new ManagedStreamingApp({
  packageName: process.env.PACKAGE_NAME ?? 'com.example.managedstreaming',
  apiKey: process.env.MENTRAOS_API_KEY,
  port: Number(process.env.PORT ?? '3000'),
}).start();
