// An unmanaged-streaming app as the RTMP streaming guide writes one, on the
// unmodified @mentra/sdk 2.1.29, streaming to the RTMP server RTMP_URL names.
import { AppServer, StreamType } from '@mentra/sdk';

class UnmanagedStreamingApp extends AppServer {
  async onSession(session, sessionId, userId) {
    session.logger.info('Unmanaged streaming app session started');

    session.subscribe(StreamType.RTMP_STREAM_STATUS);

    const statusUnsubscribe = session.camera.onStreamStatus((status) => {
      console.log('Stream status:', status.status, status.errorDetails || '');
      if (status.status === 'active') {
        session.layouts.showTextWall('Stream is live!');
        if (status.stats) {
          console.log('Stats:', JSON.stringify(status.stats));
        }
      } else if (status.status === 'error') {
        console.log('Stream error:', status.errorDetails);
        session.layouts.showTextWall(`Stream Error\n\n${status.errorDetails || 'Unknown error'}`);
      } else if (status.status === 'stopped') {
        session.layouts.showTextWall('Stream stopped');
      }
    });

    try {
      await session.camera.startStream({
        rtmpUrl: process.env.RTMP_URL,
        video: { width: 1280, height: 720, bitrate: 2500000, frameRate: 30 },
        audio: { bitrate: 128000, sampleRate: 44100, echoCancellation: true, noiseSuppression: true },
        stream: { durationLimit: 1800 },
      });
      console.log('RTMP stream request sent');
    } catch (error) {
      console.log('Failed to start RTMP stream:', error.message || error);
      if (String(error.message || error).includes('Already streaming')) {
        session.layouts.showTextWall('Camera is busy\n\nAnother stream is active');
      }
    }

    const transcriptionUnsubscribe = session.events.onTranscription(async (data) => {
      if (!data.isFinal) return;
      const command = data.text.toLowerCase().trim();
      console.log('Heard:', command);
      if (command.includes('stop stream') || command.includes('end stream')) {
        await session.camera.stopStream();
        session.layouts.showTextWall('Stopping stream...');
      } else if (command.includes('stream status')) {
        const status = session.camera.getStreamStatus();
        console.log('Status now:', status ? status.status : 'none', session.camera.isCurrentlyStreaming(), session.camera.getCurrentStreamUrl());
      }
    });

    // The guide's health check: warn on more than 5 % dropped frames.
    const healthCheckInterval = setInterval(() => {
      if (session.camera.isCurrentlyStreaming()) {
        const status = session.camera.getStreamStatus();
        if (status?.stats && status.stats.fps && status.stats.duration) {
          const dropRate = (status.stats.droppedFrames / (status.stats.fps * status.stats.duration)) * 100;
          console.log('Drop rate:', dropRate.toFixed(1));
        }
      }
    }, 1000);

    this.addCleanupHandler(statusUnsubscribe);
    this.addCleanupHandler(transcriptionUnsubscribe);
    this.addCleanupHandler(() => clearInterval(healthCheckInterval));
  }

  async onStop(sessionId, userId, reason) {
    console.log('Session stopped:', reason);
    await super.onStop(sessionId, userId, reason);
  }
}

new UnmanagedStreamingApp({
  packageName: process.env.PACKAGE_NAME ?? 'com.example.unmanagedstreaming',
  apiKey: process.env.MENTRAOS_API_KEY,
  port: Number(process.env.PORT ?? '3000'),
}).start();
